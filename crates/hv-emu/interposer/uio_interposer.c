/*
 * hv-emu uio interposer (LD_PRELOAD).
 *
 * Gives an unmodified guest (e.g. DPDK's vmbus bus driver) the kernel's /dev/uioN semantics on top of the emulated
 * device tree that hv-emu writes under $HV_EMU_DIR (see docs/contracts.md):
 *   open("/dev/uioN")            -> open $HV_EMU_DIR/dev/uioN; ctl.guest_pid = getpid(), ctl.open_count++
 *   mmap(fd, offset K * page)    -> mmap $HV_EMU_DIR/dev/uioN.maps/mapK from offset 0 (same addr/prot/flags)
 *   read(fd, 4 bytes)            -> block until ctl.event_count differs from what this fd last saw, return it
 *                                   (O_NONBLOCK: EAGAIN), like uio_read
 *   write(fd, int32 v)           -> ctl.irq_enabled = v, ctl.irq_writes++; v != 0 also clears interrupt_mask of the
 *                                   primary host->guest ring (map0 + size/2 + 8), like hv_uio_irqcontrol
 *   close/dup                    -> forget/copy the fd's association
 * Everything else goes to the next definition (dlsym RTLD_NEXT). Without $HV_EMU_DIR nothing is redirected.
 * $HV_EMU_LOG=1 logs every redirected call to stderr.
 *
 * Control page layout (little-endian): 0 magic "UCVH", 4 irq_enabled, 8 irq_writes u64, 16 event_count u64,
 * 24 guest_pid, 28 open_count.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define HVEMU_MAX_FDS 65536
#define HVEMU_MAX_UIO 256
#define CTL_IRQ_ENABLED 4
#define CTL_IRQ_WRITES 8
#define CTL_EVENT_COUNT 16
#define CTL_GUEST_PID 24
#define CTL_OPEN_COUNT 28

struct fd_entry {
    int uio_plus_one;    /* 0 = not a uio fd */
    uint32_t last_event; /* event count this fd has seen (uio listener) */
};

struct uio_entry {
    uint8_t *ctl;       /* mapping of dev/uioN.maps/ctl */
    uint8_t *rx_header; /* mapping of the host->guest ring header page (map0 + size/2) */
};

static struct fd_entry fds[HVEMU_MAX_FDS];
static struct uio_entry uios[HVEMU_MAX_UIO];
static pthread_mutex_t uio_lock = PTHREAD_MUTEX_INITIALIZER;

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef int (*open2_fn)(const char *, int);
typedef int (*openat2_fn)(int, const char *, int);
typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
typedef ssize_t (*read_fn)(int, void *, size_t);
typedef ssize_t (*read_chk_fn)(int, void *, size_t, size_t);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef int (*close_fn)(int);
typedef int (*dup_fn)(int);
typedef int (*dup2_fn)(int, int);
typedef int (*dup3_fn)(int, int, int);

static void *next_sym(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);
    if (!p) {
        static const char msg[] = "hv-emu interposer: missing libc symbol\n";
        /* syscall-free fallback is impossible; report and abort loudly rather than recurse. */
        ssize_t (*w)(int, const void *, size_t) = (write_fn)dlsym(RTLD_NEXT, "write");
        if (w)
            w(2, msg, sizeof msg - 1);
        abort();
    }
    return p;
}

#define REAL(type, name)                                                                                          \
    static type real_##name;                                                                                      \
    if (!real_##name)                                                                                             \
        real_##name = (type)next_sym(#name);

static const char *emu_dir(void)
{
    static const char *dir;
    static int looked;
    if (!looked) {
        dir = getenv("HV_EMU_DIR");
        if (dir && !*dir)
            dir = NULL;
        looked = 1;
    }
    return dir;
}

static int logging(void)
{
    static int v = -1;
    if (v < 0) {
        const char *s = getenv("HV_EMU_LOG");
        v = s && *s && strcmp(s, "0") != 0;
    }
    return v;
}

#define LOG(...)                                                                                                  \
    do {                                                                                                          \
        if (logging()) {                                                                                          \
            int saved_errno_ = errno;                                                                             \
            fprintf(stderr, "hv-emu-uio[%d]: ", (int)getpid());                                                   \
            fprintf(stderr, __VA_ARGS__);                                                                         \
            fputc('\n', stderr);                                                                                  \
            errno = saved_errno_;                                                                                 \
        }                                                                                                         \
    } while (0)

/* N if path is exactly "/dev/uio<N>", else -1. */
static int uio_number(const char *path)
{
    if (!path || !emu_dir() || strncmp(path, "/dev/uio", 8) != 0)
        return -1;
    const char *p = path + 8;
    if (*p < '0' || *p > '9')
        return -1;
    long n = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        n = n * 10 + (*p - '0');
        if (n >= HVEMU_MAX_UIO)
            return -1;
    }
    return (int)n;
}

static int fd_uio(int fd)
{
    if (fd < 0 || fd >= HVEMU_MAX_FDS)
        return -1;
    return fds[fd].uio_plus_one - 1;
}

static int open_backing(const char *fmt, int n, int k, int flags)
{
    REAL(open_fn, open);
    char path[4096];
    if (k < 0)
        snprintf(path, sizeof path, fmt, emu_dir(), n);
    else
        snprintf(path, sizeof path, fmt, emu_dir(), n, k);
    return real_open(path, flags, 0);
}

static void *map_file(int fd, size_t len, off_t off)
{
    REAL(mmap_fn, mmap);
    void *p = real_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
    return p == MAP_FAILED ? NULL : p;
}

/* Map the control page and the primary host->guest ring header of uio N once. */
static struct uio_entry *uio_get(int n)
{
    REAL(close_fn, close);
    struct uio_entry *u = &uios[n];
    pthread_mutex_lock(&uio_lock);
    if (!u->ctl) {
        int fd = open_backing("%s/dev/uio%d.maps/ctl", n, -1, O_RDWR | O_CLOEXEC);
        if (fd >= 0) {
            u->ctl = map_file(fd, 4096, 0);
            real_close(fd);
        }
    }
    if (!u->rx_header) {
        int fd = open_backing("%s/dev/uio%d.maps/map%d", n, 0, O_RDWR | O_CLOEXEC);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size >= 2 * 4096)
            u->rx_header = map_file(fd, 4096, st.st_size / 2);
        if (fd >= 0)
            real_close(fd);
    }
    pthread_mutex_unlock(&uio_lock);
    return u;
}

static uint32_t *ctl32(struct uio_entry *u, int off)
{
    return (uint32_t *)(void *)(u->ctl + off);
}

static uint64_t *ctl64(struct uio_entry *u, int off)
{
    return (uint64_t *)(void *)(u->ctl + off);
}

/* Open uio N on behalf of the guest; returns the fd or -1/errno. */
static int open_uio(int n, int flags)
{
    /* The guest's own flags (O_RDWR, O_NONBLOCK, O_CLOEXEC...), minus anything that could create or truncate. */
    int fd = open_backing("%s/dev/uio%d", n, -1, flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_TMPFILE));
    if (fd < 0)
        return -1;
    if (fd >= HVEMU_MAX_FDS) {
        REAL(close_fn, close);
        real_close(fd);
        errno = EMFILE;
        return -1;
    }
    struct uio_entry *u = uio_get(n);
    uint32_t ev = 0;
    if (u->ctl) {
        __atomic_store_n(ctl32(u, CTL_GUEST_PID), (uint32_t)getpid(), __ATOMIC_SEQ_CST);
        __atomic_fetch_add(ctl32(u, CTL_OPEN_COUNT), 1, __ATOMIC_SEQ_CST);
        ev = (uint32_t)__atomic_load_n(ctl64(u, CTL_EVENT_COUNT), __ATOMIC_SEQ_CST);
    }
    fds[fd].last_event = ev;
    __atomic_store_n(&fds[fd].uio_plus_one, n + 1, __ATOMIC_SEQ_CST);
    LOG("open /dev/uio%d flags=0x%x -> fd %d", n, flags, fd);
    return fd;
}

static int has_mode(int flags)
{
    return (flags & O_CREAT) || ((flags & O_TMPFILE) == O_TMPFILE);
}

int open(const char *path, int flags, ...)
{
    int n = uio_number(path);
    if (n >= 0)
        return open_uio(n, flags);
    REAL(open_fn, open);
    mode_t mode = 0;
    if (has_mode(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    int n = uio_number(path);
    if (n >= 0)
        return open_uio(n, flags);
    REAL(open_fn, open64);
    mode_t mode = 0;
    if (has_mode(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return real_open64(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    int n = uio_number(path);
    if (n >= 0)
        return open_uio(n, flags);
    REAL(openat_fn, openat);
    mode_t mode = 0;
    if (has_mode(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    int n = uio_number(path);
    if (n >= 0)
        return open_uio(n, flags);
    REAL(openat_fn, openat64);
    mode_t mode = 0;
    if (has_mode(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return real_openat64(dirfd, path, flags, mode);
}

int __open_2(const char *path, int flags)
{
    int n = uio_number(path);
    if (n >= 0)
        return open_uio(n, flags);
    REAL(open2_fn, __open_2);
    return real___open_2(path, flags);
}

int __open64_2(const char *path, int flags)
{
    int n = uio_number(path);
    if (n >= 0)
        return open_uio(n, flags);
    REAL(open2_fn, __open64_2);
    return real___open64_2(path, flags);
}

int __openat_2(int dirfd, const char *path, int flags)
{
    int n = uio_number(path);
    if (n >= 0)
        return open_uio(n, flags);
    REAL(openat2_fn, __openat_2);
    return real___openat_2(dirfd, path, flags);
}

int __openat64_2(int dirfd, const char *path, int flags)
{
    int n = uio_number(path);
    if (n >= 0)
        return open_uio(n, flags);
    REAL(openat2_fn, __openat64_2);
    return real___openat64_2(dirfd, path, flags);
}

static void *mmap_uio(int n, void *addr, size_t len, int prot, int flags, off_t off)
{
    REAL(mmap_fn, mmap);
    REAL(close_fn, close);
    long page = sysconf(_SC_PAGESIZE);
    if (off < 0 || off % page != 0 || off / page > 4) {
        LOG("mmap uio%d offset 0x%llx: no such map", n, (unsigned long long)off);
        errno = EINVAL;
        return MAP_FAILED;
    }
    int k = (int)(off / page);
    int mfd = open_backing("%s/dev/uio%d.maps/map%d", n, k, ((prot & PROT_WRITE) ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (mfd < 0)
        return MAP_FAILED;
    struct stat st = {0};
    if (fstat(mfd, &st) != 0 || len == 0 || (off_t)len > st.st_size) {
        /* uio_mmap refuses a mapping larger than the map. */
        LOG("mmap uio%d map%d len 0x%zx > size 0x%llx", n, k, len, (unsigned long long)st.st_size);
        real_close(mfd);
        errno = EINVAL;
        return MAP_FAILED;
    }
    void *p = real_mmap(addr, len, prot, flags, mfd, 0);
    int e = errno;
    real_close(mfd);
    errno = e;
    LOG("mmap uio%d map%d addr=%p len=0x%zx prot=0x%x flags=0x%x -> %p", n, k, addr, len, prot, flags, p);
    return p;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    int n = fd_uio(fd);
    if (n >= 0)
        return mmap_uio(n, addr, len, prot, flags, off);
    REAL(mmap_fn, mmap);
    return real_mmap(addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    int n = fd_uio(fd);
    if (n >= 0)
        return mmap_uio(n, addr, len, prot, flags, off);
    REAL(mmap_fn, mmap64);
    return real_mmap64(addr, len, prot, flags, fd, off);
}

static ssize_t read_uio(int fd, int n, void *buf, size_t count)
{
    if (count != 4) {
        errno = EINVAL;
        return -1;
    }
    struct uio_entry *u = uio_get(n);
    if (!u->ctl) {
        errno = EIO;
        return -1;
    }
    for (;;) {
        uint32_t ev = (uint32_t)__atomic_load_n(ctl64(u, CTL_EVENT_COUNT), __ATOMIC_SEQ_CST);
        if (ev != fds[fd].last_event) {
            fds[fd].last_event = ev;
            memcpy(buf, &ev, 4);
            LOG("read uio%d fd %d -> event %u", n, fd, ev);
            return 4;
        }
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0 && (fl & O_NONBLOCK)) {
            errno = EAGAIN;
            return -1;
        }
        struct timespec ts = {0, 50 * 1000};
        nanosleep(&ts, NULL);
    }
}

ssize_t read(int fd, void *buf, size_t count)
{
    int n = fd_uio(fd);
    if (n >= 0)
        return read_uio(fd, n, buf, count);
    REAL(read_fn, read);
    return real_read(fd, buf, count);
}

ssize_t __read_chk(int fd, void *buf, size_t count, size_t buflen)
{
    int n = fd_uio(fd);
    if (n >= 0) {
        if (count > buflen)
            abort(); /* what glibc's __chk_fail does */
        return read_uio(fd, n, buf, count);
    }
    REAL(read_chk_fn, __read_chk);
    return real___read_chk(fd, buf, count, buflen);
}

ssize_t write(int fd, const void *buf, size_t count)
{
    int n = fd_uio(fd);
    if (n < 0) {
        REAL(write_fn, write);
        return real_write(fd, buf, count);
    }
    if (count != 4) {
        errno = EINVAL;
        return -1;
    }
    struct uio_entry *u = uio_get(n);
    if (!u->ctl) {
        errno = EIO;
        return -1;
    }
    int32_t v;
    memcpy(&v, buf, 4);
    __atomic_store_n(ctl32(u, CTL_IRQ_ENABLED), (uint32_t)v, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(ctl64(u, CTL_IRQ_WRITES), 1, __ATOMIC_SEQ_CST);
    if (v != 0 && u->rx_header)
        __atomic_store_n((uint32_t *)(void *)(u->rx_header + 8), 0, __ATOMIC_SEQ_CST);
    LOG("write uio%d fd %d irq %d", n, fd, v);
    return 4;
}

int close(int fd)
{
    int n = fd_uio(fd);
    if (n >= 0) {
        __atomic_store_n(&fds[fd].uio_plus_one, 0, __ATOMIC_SEQ_CST);
        LOG("close uio%d fd %d", n, fd);
    }
    REAL(close_fn, close);
    return real_close(fd);
}

static void copy_fd(int from, int to)
{
    if (to >= 0 && to < HVEMU_MAX_FDS) {
        int n = fd_uio(from);
        fds[to].last_event = n >= 0 ? fds[from].last_event : 0;
        __atomic_store_n(&fds[to].uio_plus_one, n + 1, __ATOMIC_SEQ_CST);
        if (n >= 0)
            LOG("dup uio%d fd %d -> %d", n, from, to);
    }
}

int dup(int fd)
{
    REAL(dup_fn, dup);
    int r = real_dup(fd);
    if (r >= 0)
        copy_fd(fd, r);
    return r;
}

int dup2(int fd, int fd2)
{
    REAL(dup2_fn, dup2);
    int r = real_dup2(fd, fd2);
    if (r >= 0 && r != fd)
        copy_fd(fd, r);
    return r;
}

int dup3(int fd, int fd2, int flags)
{
    REAL(dup3_fn, dup3);
    int r = real_dup3(fd, fd2, flags);
    if (r >= 0)
        copy_fd(fd, r);
    return r;
}

#ifdef HV_EMU_HAVE_DPDK
/*
 * DPDK 22.11 defect: net/netvsc's hn_dev_rx_queue_info/hn_dev_tx_queue_info never fill queue_state, so it stays
 * RTE_ETH_QUEUE_STATE_STOPPED and testpmd 22.11 disables every forwarding stream on such a queue. Fixed upstream in
 * DPDK 23.11 by commit 0727d5d0e6 ("net/netvsc: set queue state after start/stop"). When the guest's DPDK is older
 * than that fix — rte_version() (librte_eal, looked up at the first call) says 22.x or 23.03/23.07, the releases
 * whose ethdev ABI (23) these wrappers were compiled against — they report the queues as started, which is what the
 * fix makes the PMD do after dev_start; for 23.11 and later, an unknown version, or none, they pass through.
 * HV_EMU_DPDK_QUEUE_STATE_FIX=1 forces the workaround on, =0 off, whatever the version.
 */
#include <rte_ethdev.h>

/* year * 100 + month of "DPDK 22.11.11"-style text; -1 when it has none. */
static int parse_dpdk_version(const char *s)
{
    if (!s)
        return -1;
    while (*s && (*s < '0' || *s > '9'))
        s++;
    char *end;
    long year = strtol(s, &end, 10);
    if (end == s || *end != '.')
        return -1;
    const char *m = end + 1;
    long month = strtol(m, &end, 10);
    if (end == m || year < 1 || year > 99 || month < 1 || month > 12)
        return -1;
    return (int)(year * 100 + month);
}

static int queue_state_fix(void)
{
    static int decided = -1;
    int d = __atomic_load_n(&decided, __ATOMIC_RELAXED);
    if (d >= 0)
        return d;
    const char *env = getenv("HV_EMU_DPDK_QUEUE_STATE_FIX");
    typedef const char *(*version_fn)(void);
    version_fn version = (version_fn)dlsym(RTLD_DEFAULT, "rte_version");
    const char *text = version ? version() : NULL;
    int v = parse_dpdk_version(text);
    const char *why;
    if (env && strcmp(env, "1") == 0) {
        d = 1;
        why = "forced on by HV_EMU_DPDK_QUEUE_STATE_FIX=1";
    } else if (env && strcmp(env, "0") == 0) {
        d = 0;
        why = "forced off by HV_EMU_DPDK_QUEUE_STATE_FIX=0";
    } else {
        d = v >= 2200 && v < 2311;
        why = v < 0 ? "DPDK version unknown" : d ? "DPDK before 23.11 (22.11 defect)" : "DPDK 23.11 or later";
    }
    LOG("DPDK version '%s': queue-state workaround %s (%s)", text ? text : "(no rte_version)", d ? "on" : "off",
        why);
    __atomic_store_n(&decided, d, __ATOMIC_RELAXED);
    return d;
}

typedef int (*rxq_info_fn)(uint16_t, uint16_t, struct rte_eth_rxq_info *);
typedef int (*txq_info_fn)(uint16_t, uint16_t, struct rte_eth_txq_info *);

int rte_eth_rx_queue_info_get(uint16_t port_id, uint16_t queue_id, struct rte_eth_rxq_info *qinfo)
{
    rxq_info_fn real = (rxq_info_fn)dlsym(RTLD_NEXT, "rte_eth_rx_queue_info_get");
    if (!real)
        return -ENOTSUP;
    int rc = real(port_id, queue_id, qinfo);
    if (rc == 0 && qinfo && queue_state_fix())
        qinfo->queue_state = RTE_ETH_QUEUE_STATE_STARTED;
    return rc;
}

int rte_eth_tx_queue_info_get(uint16_t port_id, uint16_t queue_id, struct rte_eth_txq_info *qinfo)
{
    txq_info_fn real = (txq_info_fn)dlsym(RTLD_NEXT, "rte_eth_tx_queue_info_get");
    if (!real)
        return -ENOTSUP;
    int rc = real(port_id, queue_id, qinfo);
    if (rc == 0 && qinfo && queue_state_fix())
        qinfo->queue_state = RTE_ETH_QUEUE_STATE_STARTED;
    return rc;
}

/*
 * VF stand-in: net/netvsc (22.11 hn_vf_configure) configures its VF with intr_conf.rmv = 1, because the VFs it was
 * written for (mlx4/mlx5, MANA) report hot-removal. An emulated VF is a veth under DPDK's af_packet PMD, which has
 * no removal interrupt, so ethdev refuses that configuration ("Driver net_af_packet does not support rmv", -EINVAL)
 * and the port never starts. Only when HV_EMU_DPDK_VF_RMV_FIX=1, and only for a port whose driver lacks
 * RTE_ETH_DEV_INTR_RMV, the request is passed on with rmv = 0: the VF then works, without removal events.
 */
typedef int (*configure_fn)(uint16_t, uint16_t, uint16_t, const struct rte_eth_conf *);

static int vf_rmv_fix(void)
{
    const char *s = getenv("HV_EMU_DPDK_VF_RMV_FIX");
    return s && strcmp(s, "1") == 0;
}

int rte_eth_dev_configure(uint16_t port_id, uint16_t nb_rx_q, uint16_t nb_tx_q, const struct rte_eth_conf *conf)
{
    configure_fn real = (configure_fn)dlsym(RTLD_NEXT, "rte_eth_dev_configure");
    if (!real)
        return -ENOTSUP;
    if (conf && conf->intr_conf.rmv && vf_rmv_fix()) {
        struct rte_eth_dev_info info;
        if (rte_eth_dev_info_get(port_id, &info) == 0 && info.dev_flags &&
            !(*info.dev_flags & RTE_ETH_DEV_INTR_RMV)) {
            struct rte_eth_conf copy = *conf;
            copy.intr_conf.rmv = 0;
            if (getenv("HV_EMU_LOG"))
                fprintf(stderr, "hv-emu interposer: port %u configured without rmv (driver %s has none)\n",
                        port_id, info.driver_name ? info.driver_name : "?");
            return real(port_id, nb_rx_q, nb_tx_q, &copy);
        }
    }
    return real(port_id, nb_rx_q, nb_tx_q, conf);
}
#endif
