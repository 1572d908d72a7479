// Socket filter on a packet socket per interface: only L7 messages reach user space.
//
// A packet is kept when it is DNS (UDP or TCP with a port in dns_ports) or a TCP
// segment whose payload starts like an HTTP/1.x message (a method or "HTTP/1.");
// everything else is dropped in the kernel and only counted. A kept packet is cut
// to its headers plus PAYLOAD_BYTES of payload: the return value of a socket
// filter is how many bytes to queue. On loopback every packet passes the packet
// taps twice (leaving and arriving): the leaving copy is dropped here.
//
// Packets are read with bpf_skb_load_bytes (socket filters have no direct packet
// access); only UAPI headers are used. PAYLOAD_BYTES and LOOPBACK_IFINDEX are
// defined by the loader.
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/if_packet.h>
#include <uapi/linux/in.h>
#include "l7_http_start.h"

#define IP_OFFSET 0x1FFF

BPF_HASH(dns_ports, u16, u8, 64);

// 0: packets inspected, 1: DNS packets kept, 2: HTTP packets kept, 3: TCP payloads skipped (not a message start)
BPF_PERCPU_ARRAY(l7_stats, u64, 4);

static __always_inline void bump(int index) {
    u64 *value = l7_stats.lookup(&index);
    if (value)
        *value += 1;
}

static __always_inline int is_dns_port(u16 port) {
    return dns_ports.lookup(&port) != NULL;
}

static __always_inline u32 keep(struct __sk_buff *skb, u32 payload) {
    u32 want = payload + PAYLOAD_BYTES;
    return want < skb->len ? want : skb->len;
}

int l7_filter(struct __sk_buff *skb) {
    if (skb->pkt_type == PACKET_OUTGOING && skb->ifindex == LOOPBACK_IFINDEX)
        return 0;
    bump(0);
    u32 l3 = ETH_HLEN;
    u16 proto = 0;
    if (bpf_skb_load_bytes(skb, 12, &proto, 2) < 0)
        return 0;
    if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
        if (bpf_skb_load_bytes(skb, 16, &proto, 2) < 0)
            return 0;
        l3 += 4;
    }
    u8 protocol = 0;
    u32 l4 = 0;
    if (proto == bpf_htons(ETH_P_IP)) {
        u8 version_ihl = 0;
        u16 fragment = 0;
        if (bpf_skb_load_bytes(skb, l3, &version_ihl, 1) < 0 ||
            bpf_skb_load_bytes(skb, l3 + 6, &fragment, 2) < 0 ||
            bpf_skb_load_bytes(skb, l3 + 9, &protocol, 1) < 0)
            return 0;
        if (fragment & bpf_htons(IP_OFFSET))
            return 0;
        l4 = l3 + (version_ihl & 0x0F) * 4;
    } else if (proto == bpf_htons(ETH_P_IPV6)) {
        if (bpf_skb_load_bytes(skb, l3 + 6, &protocol, 1) < 0)
            return 0;
        l4 = l3 + 40;
    } else {
        return 0;
    }
    u16 ports[2] = {};
    if (bpf_skb_load_bytes(skb, l4, ports, 4) < 0)
        return 0;
    u16 sport = bpf_ntohs(ports[0]), dport = bpf_ntohs(ports[1]);
    if (protocol == IPPROTO_UDP) {
        if (!is_dns_port(sport) && !is_dns_port(dport))
            return 0;
        bump(1);
        return keep(skb, l4 + 8);
    }
    if (protocol != IPPROTO_TCP)
        return 0;
    u8 data_offset = 0;
    if (bpf_skb_load_bytes(skb, l4 + 12, &data_offset, 1) < 0)
        return 0;
    u32 payload = l4 + (data_offset >> 4) * 4;
    if (payload >= skb->len)
        return 0;  // no payload: handshakes and bare ACKs
    if (is_dns_port(sport) || is_dns_port(dport)) {
        bump(1);
        return keep(skb, payload);
    }
    u8 head[8] = {};
    if (bpf_skb_load_bytes(skb, payload, head, 8) < 0) {
        bump(3);
        return 0;
    }
    if (!http_start(head)) {
        bump(3);
        return 0;
    }
    bump(2);
    return keep(skb, payload);
}
