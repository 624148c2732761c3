/* A tiny "unmodified guest" for tests/interposer.rs: uses /dev/uio0 exactly as a uio_hv_generic user would. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 6)
        return 2;
    int fd = open("/dev/uio0", O_RDWR);
    if (fd < 0) {
        printf("open failed %d\n", errno);
        return 10;
    }
    for (int k = 0; k < 5; k++) {
        size_t size = strtoull(argv[1 + k], NULL, 0);
        volatile uint32_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)k * 4096);
        if (p == MAP_FAILED) {
            printf("mmap%d failed %d\n", k, errno);
            return 20 + k;
        }
        printf("map%d host=%x\n", k, p[4]);
        p[5] = 0xa0 + k;
        p[size / 4 - 1] = 0xe0 + k; /* the last word: the whole map is backed */
    }
    void *bad = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 5 * 4096);
    printf("mmap5 %s %d\n", bad == MAP_FAILED ? "failed" : "ok", errno);
    errno = 0;
    bad = mmap(NULL, 8192, PROT_READ, MAP_SHARED, fd, 1 * 4096);
    printf("mmap1-too-big %s %d\n", bad == MAP_FAILED ? "failed" : "ok", errno);
    int32_t zero = 0, one = 1;
    printf("write0 %zd\n", write(fd, &zero, 4));
    printf("write1 %zd\n", write(fd, &one, 4));
    errno = 0;
    ssize_t r = write(fd, &one, 3);
    printf("write3 %zd %d\n", r, errno);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    uint32_t ev = 0;
    errno = 0;
    r = read(fd, &ev, 4);
    printf("read-nonblock %zd %d\n", r, errno);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    int fd2 = dup(fd);
    printf("ready\n");
    fflush(stdout);
    ssize_t n = read(fd2, &ev, 4);
    printf("read %zd event %u\n", n, ev);
    close(fd);
    close(fd2);
    errno = 0;
    bad = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    printf("mmap-after-close %s %d\n", bad == MAP_FAILED ? "failed" : "ok", errno);
    return 0;
}
