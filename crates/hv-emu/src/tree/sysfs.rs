//! Small file-writing helpers that print values the way the kernel's sysfs attributes do.

use std::fs;
use std::io;
use std::path::Path;

use super::TreeError;

/// Write `contents` to `path`, naming the path in the error.
pub(crate) fn write(path: &Path, contents: &str) -> Result<(), TreeError> {
    fs::write(path, contents).map_err(|e| TreeError::io("write", path, e))
}

/// `mkdir -p`, naming the path in the error.
pub(crate) fn mkdir(path: &Path) -> Result<(), TreeError> {
    fs::create_dir_all(path).map_err(|e| TreeError::io("create directory", path, e))
}

/// Relative symlink `link -> target`, replacing a stale link.
pub(crate) fn symlink(target: &str, link: &Path) -> Result<(), TreeError> {
    match fs::remove_file(link) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(TreeError::io("replace symlink", link, e)),
    }
    std::os::unix::fs::symlink(target, link).map_err(|e| TreeError::io("symlink", link, e))
}

/// Create (or truncate) a sparse file of `len` bytes.
pub(crate) fn sized_file(path: &Path, len: u64) -> Result<(), TreeError> {
    let file = fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| TreeError::io("create backing file", path, e))?;
    file.set_len(len)
        .map_err(|e| TreeError::io("size backing file", path, e))
}

/// A GUID as the vmbus sysfs attributes print it: `{xxxxxxxx-...}` + newline.
pub(crate) fn guid(uuid: &str) -> String {
    format!("{{{uuid}}}\n")
}

/// A uio map attribute (`size`, `addr`, `offset`) as uio prints it: `0x%016llx`.
pub(crate) fn hex64(v: u64) -> String {
    format!("0x{v:016x}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_kernel() {
        assert_eq!(
            guid("f8615163-df3e-46c5-913f-f2d2f965ed0e"),
            "{f8615163-df3e-46c5-913f-f2d2f965ed0e}\n"
        );
        assert_eq!(hex64(0x40_0000), "0x0000000000400000\n");
        assert_eq!(hex64(0), "0x0000000000000000\n");
    }
}
