// XDP: per-flow packet and byte counters, aggregated in the kernel.
//
// One entry per (interface, IP version, protocol, addresses, ports) in a per-CPU
// LRU hash: no locks or atomics on the packet path, and when the map is full the
// least recently used flows make room instead of new flows being dropped.
// User space drains the map every interval with BPF_MAP_LOOKUP_AND_DELETE_BATCH.
// Every packet is passed on (XDP_PASS): this program only counts.
//
// MAP_SIZE is defined by the loader. Only UAPI headers are used, so the layout
// does not depend on the kernel headers matching the running kernel.
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>

#define VLAN_HLEN 4
#define IP_OFFSET 0x1FFF

struct flow_key {
    u8 saddr[16];
    u8 daddr[16];
    u32 ifindex;
    u16 sport;     // host byte order; ICMP: type
    u16 dport;     // host byte order; ICMP: code
    u8 ip_version; // 4 or 6
    u8 protocol;   // IPPROTO_*
    u8 pad[2];
};

struct flow_counters {
    u64 packets;
    u64 bytes;     // IP bytes: header and payload, as the IP header states
    u64 first_ns;  // CLOCK_MONOTONIC
    u64 last_ns;
    u8 tcp_flags;  // every flag seen (FIN=0x01 ... CWR=0x80)
    u8 opened;     // a SYN without ACK went this way: its sender opened the connection
    u8 pad[6];
};

BPF_TABLE("lru_percpu_hash", struct flow_key, struct flow_counters, xdp_flows, MAP_SIZE);

// 0: packets counted, 1: packets not IPv4/IPv6, 2: new flow entries, 3: failed inserts
BPF_PERCPU_ARRAY(xdp_stats, u64, 4);

static __always_inline void bump(int index) {
    u64 *value = xdp_stats.lookup(&index);
    if (value)
        *value += 1;
}

struct ports {
    u16 source;
    u16 dest;
};

// Fills the ports (or ICMP type/code) and TCP flags from the L4 header at `l4`.
static __always_inline void read_l4(void *l4, void *end, u8 protocol, struct flow_key *key, u8 *flags) {
    if (protocol == IPPROTO_TCP || protocol == IPPROTO_UDP || protocol == IPPROTO_SCTP) {
        struct ports *ports = l4;
        if ((void *)(ports + 1) > end)
            return;
        key->sport = bpf_ntohs(ports->source);
        key->dport = bpf_ntohs(ports->dest);
        if (protocol == IPPROTO_TCP) {
            u8 *flag_byte = (u8 *)l4 + 13;
            if ((void *)(flag_byte + 1) <= end)
                *flags = *flag_byte;
        }
    } else if (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6) {
        u8 *icmp = l4;
        if ((void *)(icmp + 2) > end)
            return;
        key->sport = icmp[0];
        key->dport = icmp[1];
    }
}

int xdp_count_flows(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        return XDP_PASS;
    u16 proto = eth->h_proto;
    void *l3 = eth + 1;
    if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
        if (l3 + VLAN_HLEN > end)
            return XDP_PASS;
        proto = *(u16 *)(l3 + 2);
        l3 += VLAN_HLEN;
    }

    struct flow_key key = {};
    key.ifindex = ctx->ingress_ifindex;
    u64 length = 0;
    u8 flags = 0;
    if (proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = l3;
        if ((void *)(ip + 1) > end)
            return XDP_PASS;
        key.ip_version = 4;
        key.protocol = ip->protocol;
        __builtin_memcpy(key.saddr, &ip->saddr, 4);
        __builtin_memcpy(key.daddr, &ip->daddr, 4);
        length = bpf_ntohs(ip->tot_len);
        // Later fragments carry no L4 header: they count under ports 0.
        if (!(ip->frag_off & bpf_htons(IP_OFFSET)))
            read_l4(l3 + ip->ihl * 4, end, ip->protocol, &key, &flags);
    } else if (proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = l3;
        if ((void *)(ip6 + 1) > end)
            return XDP_PASS;
        key.ip_version = 6;
        key.protocol = ip6->nexthdr;
        __builtin_memcpy(key.saddr, &ip6->saddr, 16);
        __builtin_memcpy(key.daddr, &ip6->daddr, 16);
        length = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
        read_l4(ip6 + 1, end, ip6->nexthdr, &key, &flags);
    } else {
        bump(1);
        return XDP_PASS;
    }
    if (length == 0)  // jumbo payloads (BIG TCP) leave the length fields 0
        length = end - l3;

    u8 opened = (flags & 0x12) == 0x02;
    bump(0);
    u64 now = bpf_ktime_get_ns();
    struct flow_counters *counters = xdp_flows.lookup(&key);
    if (counters) {
        counters->packets += 1;
        counters->bytes += length;
        counters->last_ns = now;
        counters->tcp_flags |= flags;
        counters->opened |= opened;
        return XDP_PASS;
    }
    struct flow_counters fresh = {};
    fresh.packets = 1;
    fresh.bytes = length;
    fresh.first_ns = now;
    fresh.last_ns = now;
    fresh.tcp_flags = flags;
    fresh.opened = opened;
    if (xdp_flows.update(&key, &fresh) == 0)
        bump(2);
    else
        bump(3);
    return XDP_PASS;
}
