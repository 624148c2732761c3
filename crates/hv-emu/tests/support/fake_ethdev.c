/*
 * A stand-in for the two DPDK libraries the interposer's queue-state wrappers meet (tests/interposer.rs): built as
 * a shared object (-DFAKE_LIB) it defines rte_version() — its text from $FAKE_RTE_VERSION, NULL for "none" — and
 * rte_eth_{rx,tx}_queue_info_get() that report every queue STOPPED, as DPDK 22.11's net/netvsc does; built as a
 * program it calls both info functions for queue 0 and prints "rx=<state> tx=<state>".
 */
#include <rte_ethdev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef FAKE_LIB
const char *rte_version(void)
{
    const char *v = getenv("FAKE_RTE_VERSION");
    if (v && strcmp(v, "none") == 0)
        return NULL;
    return v ? v : "DPDK 22.11.11";
}

int rte_eth_rx_queue_info_get(uint16_t port_id, uint16_t queue_id, struct rte_eth_rxq_info *qinfo)
{
    (void)port_id;
    (void)queue_id;
    memset(qinfo, 0, sizeof *qinfo);
    qinfo->queue_state = RTE_ETH_QUEUE_STATE_STOPPED;
    return 0;
}

int rte_eth_tx_queue_info_get(uint16_t port_id, uint16_t queue_id, struct rte_eth_txq_info *qinfo)
{
    (void)port_id;
    (void)queue_id;
    memset(qinfo, 0, sizeof *qinfo);
    qinfo->queue_state = RTE_ETH_QUEUE_STATE_STOPPED;
    return 0;
}
#else
int main(void)
{
    struct rte_eth_rxq_info rx;
    struct rte_eth_txq_info tx;
    if (rte_eth_rx_queue_info_get(0, 0, &rx) != 0 || rte_eth_tx_queue_info_get(0, 0, &tx) != 0)
        return 1;
    printf("rx=%u tx=%u\n", (unsigned)rx.queue_state, (unsigned)tx.queue_state);
    return 0;
}
#endif
