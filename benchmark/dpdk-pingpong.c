/*
 * DPDK side of `npm run bench -- --latency` (benchmark/latency.ts builds this at run time with gcc and
 * `pkg-config --cflags --libs libdpdk`, then runs it under `netvsc emulate --run` as the vs-dpdk bench runs testpmd):
 * through DPDK's netvsc PMD on port 0, COUNT round trips of a 64-byte frame via the host's loopback backend, one
 * frame in flight, after WARM unrecorded ones; each frame carries its sequence number (bytes 14..22), so a late frame
 * of a timed-out round trip is not taken for the next one. A round trip is timed (CLOCK_MONOTONIC) from just before
 * rte_eth_tx_burst to the rte_eth_rx_burst that returns a frame, the same span benchmark/ping.ts times for the
 * netvsc guests. Prints one line `result {json}` with the percentiles in microseconds.
 *
 *   pingpong <EAL args, e.g. -l 1 --no-huge -m 256 --no-pci -a UUID,latency=50> -- COUNT WARM
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#define TIMEOUT_NS 1000000000ull
#define RING 512

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double pct(const double *v, long n, double p)
{
	long i;

	if (n == 0)
		return -1;
	i = (long)(p / 100.0 * (double)n);
	return v[i < n ? i : n - 1] / 1000.0;
}

int main(int argc, char **argv)
{
	struct rte_eth_conf conf;
	struct rte_ether_addr mac;
	struct rte_mempool *pool;
	struct rte_mbuf *rx[32];
	uint8_t frame[64];
	long count, warm, i, n = 0, lost = 0;
	double *rtt, sum = 0;
	uint16_t port = 0;
	int used = rte_eal_init(argc, argv);

	if (used < 0) {
		fprintf(stderr, "pingpong: EAL initialisation failed\n");
		return 1;
	}
	argc -= used;
	argv += used;
	count = argc > 1 ? atol(argv[1]) : 10000;
	warm = argc > 2 ? atol(argv[2]) : 200;
	if (rte_eth_dev_count_avail() == 0) {
		fprintf(stderr, "pingpong: no ethdev port (is the netvsc PMD loaded?)\n");
		return 1;
	}
	pool = rte_pktmbuf_pool_create("pingpong", 2047, 64, 0, RTE_MBUF_DEFAULT_BUF_SIZE, (int)rte_socket_id());
	if (pool == NULL) {
		fprintf(stderr, "pingpong: cannot create the mbuf pool\n");
		return 1;
	}
	memset(&conf, 0, sizeof(conf));
	if (rte_eth_dev_configure(port, 1, 1, &conf) != 0 ||
	    rte_eth_rx_queue_setup(port, 0, RING, rte_eth_dev_socket_id(port), NULL, pool) != 0 ||
	    rte_eth_tx_queue_setup(port, 0, RING, rte_eth_dev_socket_id(port), NULL) != 0 ||
	    rte_eth_dev_start(port) != 0) {
		fprintf(stderr, "pingpong: cannot configure and start port 0\n");
		return 1;
	}
	rte_eth_macaddr_get(port, &mac);
	memset(frame, 0, sizeof(frame));
	memcpy(frame, mac.addr_bytes, 6);
	frame[6] = 0x02;
	frame[11] = 0x03;
	frame[12] = 0x88;
	frame[13] = 0xb5;
	rtt = calloc((size_t)(count > 0 ? count : 1), sizeof(double));
	if (rtt == NULL)
		return 1;
	printf("ready\n");
	fflush(stdout);
	for (i = 0; i < warm + count; i++) {
		struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
		uint64_t t0, deadline;
		int sent = 0, back = 0;
		char *p;

		if (m == NULL || (p = rte_pktmbuf_append(m, sizeof(frame))) == NULL) {
			fprintf(stderr, "pingpong: out of mbufs\n");
			return 1;
		}
		/* The sequence number in bytes 14..22: a late frame of a timed-out round trip is not taken for this one. */
		memcpy(frame + 14, &i, sizeof(i));
		memcpy(p, frame, sizeof(frame));
		t0 = now_ns();
		deadline = t0 + TIMEOUT_NS;
		while (!sent) {
			sent = rte_eth_tx_burst(port, 0, &m, 1) == 1;
			if (!sent && now_ns() >= deadline) {
				rte_pktmbuf_free(m);
				break;
			}
		}
		while (sent && !back) {
			uint16_t k = rte_eth_rx_burst(port, 0, rx, 32);

			for (uint16_t j = 0; j < k; j++) {
				if (rte_pktmbuf_data_len(rx[j]) >= 22 &&
				    memcmp(rte_pktmbuf_mtod_offset(rx[j], const uint8_t *, 14), frame + 14, 8) == 0)
					back = 1;
			}
			if (k > 0)
				rte_pktmbuf_free_bulk(rx, k);
			if (!back && now_ns() >= deadline) {
				break;
			}
		}
		if (i < warm)
			continue;
		if (back) {
			rtt[n] = (double)(now_ns() - t0);
			sum += rtt[n];
			n++;
		} else {
			lost++;
		}
	}
	qsort(rtt, (size_t)n, sizeof(double), by_value);
	printf("result {\"n\":%ld,\"lost\":%ld,\"minUs\":%.3f,\"p50Us\":%.3f,\"p99Us\":%.3f,\"p999Us\":%.3f,\"maxUs\":%.3f,\"meanUs\":%.3f}\n",
	       n, lost, pct(rtt, n, 0), pct(rtt, n, 50), pct(rtt, n, 99), pct(rtt, n, 99.9),
	       n > 0 ? rtt[n - 1] / 1000.0 : -1, n > 0 ? sum / (double)n / 1000.0 : -1);
	fflush(stdout);
	free(rtt);
	rte_eth_dev_stop(port);
	rte_eth_dev_close(port);
	rte_eal_cleanup();
	return 0;
}
