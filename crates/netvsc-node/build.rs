//! Links the addon the way Node-API expects (on linux-gnu this also keeps the library resident).
fn main() {
    napi_build::setup();
}
