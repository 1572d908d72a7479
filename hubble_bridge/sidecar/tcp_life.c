// TCP lifecycle from tracepoints: connects, accepts, closes, resets, retransmits.
//
// Only tracepoint arguments are read (the running kernel describes them in
// tracefs, BCC builds the structs from that), never struct sock fields, whose
// offsets the installed headers may get wrong. One event per connection step
// goes to user space through a ring buffer; retransmits are counted in the
// kernel per connection and drained every interval.
//
// CONN_MAP_SIZE, RETRANS_MAP_SIZE and RINGBUF_PAGES are defined by the loader.
#include <uapi/linux/bpf.h>
#include <uapi/linux/in.h>

#define AF_INET 2
#define AF_INET6 10

enum { TCP_ESTABLISHED = 1, TCP_SYN_SENT = 2, TCP_SYN_RECV = 3, TCP_FIN_WAIT1 = 4,
       TCP_CLOSE = 7, TCP_CLOSE_WAIT = 8, TCP_LISTEN = 10 };
enum { ROLE_CLIENT = 1, ROLE_SERVER = 2 };
enum { CLOSED_BY_LOCAL = 1, CLOSED_BY_REMOTE = 2 };
enum { RESET_RECEIVED = 1, RESET_SENT = 2 };
enum { EV_CONNECT = 1, EV_ACCEPT = 2, EV_CLOSE = 3, EV_CONNECT_FAILED = 4, EV_CONNECT_ERROR = 5 };

struct conn {
    u64 start_ns;        // SYN sent or received
    u64 established_ns;
    u32 pid;
    u32 retransmits;
    char comm[16];
    u8 role;
    u8 closed_by;
    u8 reset;
    u8 pad[5];
};

struct listener_key {
    u16 family;
    u16 port;
};

struct process {
    u32 pid;
    char comm[16];
};

struct tcp_event {
    u64 time_ns;         // CLOCK_MONOTONIC
    u64 latency_ns;      // connect: SYN_SENT -> ESTABLISHED
    u64 duration_ns;     // close: ESTABLISHED -> CLOSE
    u8 local[16];
    u8 remote[16];
    u32 pid;
    u32 retransmits;
    s32 error;           // connect errors (kprobe): the errno
    char comm[16];
    u16 local_port;
    u16 remote_port;
    u8 ip_version;
    u8 kind;
    u8 role;
    u8 closed_by;
    u8 reset;
    u8 pad[3];
};

struct retrans_key {
    u8 local[16];
    u8 remote[16];
    u16 local_port;
    u16 remote_port;
    u8 ip_version;
    u8 pad[3];
};

struct retrans_value {
    u64 count;
    u64 last_ns;
    u32 pid;
    char comm[16];
    u8 role;
    u8 pad[3];
};

BPF_TABLE("lru_hash", u64, struct conn, tcp_conns, CONN_MAP_SIZE);
BPF_TABLE("lru_hash", struct listener_key, struct process, tcp_listeners, 4096);
BPF_TABLE("lru_hash", struct retrans_key, struct retrans_value, tcp_retransmits, RETRANS_MAP_SIZE);
BPF_RINGBUF_OUTPUT(tcp_events, RINGBUF_PAGES);
// 0: events sent, 1: events the ring buffer had no room for, 2: connections tracked
BPF_PERCPU_ARRAY(tcp_stats, u64, 3);

static __always_inline void bump(int index) {
    u64 *value = tcp_stats.lookup(&index);
    if (value)
        *value += 1;
}

static __always_inline void copy_addrs(u8 *local, u8 *remote, u16 family, const u8 *saddr,
                                       const u8 *daddr, const u8 *saddr6, const u8 *daddr6) {
    if (family == AF_INET) {
        __builtin_memcpy(local, saddr, 4);
        __builtin_memcpy(remote, daddr, 4);
    } else {
        __builtin_memcpy(local, saddr6, 16);
        __builtin_memcpy(remote, daddr6, 16);
    }
}

static __always_inline void emit(struct tcp_event *event) {
    if (tcp_events.ringbuf_output(event, sizeof(*event), 0) == 0)
        bump(0);
    else
        bump(1);
}

#ifdef HAVE_SET_STATE_TP
TRACEPOINT_PROBE(sock, inet_sock_set_state) {
    if (args->protocol != IPPROTO_TCP)
        return 0;
    u64 sk = (u64)args->skaddr;
    int from = args->oldstate;
    int to = args->newstate;
    u64 now = bpf_ktime_get_ns();

    if (to == TCP_LISTEN) {
        // listen() runs in the server's context: accepted connections inherit it.
        struct listener_key lkey = {.family = args->family, .port = args->sport};
        struct process owner = {.pid = bpf_get_current_pid_tgid() >> 32};
        bpf_get_current_comm(&owner.comm, sizeof(owner.comm));
        tcp_listeners.update(&lkey, &owner);
        return 0;
    }
    if (from == TCP_LISTEN && to == TCP_CLOSE) {
        struct listener_key lkey = {.family = args->family, .port = args->sport};
        tcp_listeners.delete(&lkey);
        return 0;
    }
    if (to == TCP_SYN_SENT) {
        // connect() runs in the caller's context.
        struct conn fresh = {.start_ns = now, .role = ROLE_CLIENT};
        fresh.pid = bpf_get_current_pid_tgid() >> 32;
        bpf_get_current_comm(&fresh.comm, sizeof(fresh.comm));
        tcp_conns.update(&sk, &fresh);
        bump(2);
        return 0;
    }
    if (to == TCP_SYN_RECV) {
        // Softirq context: the current task is unrelated, the listener is not.
        struct conn fresh = {.start_ns = now, .role = ROLE_SERVER};
        struct listener_key lkey = {.family = args->family, .port = args->sport};
        struct process *owner = tcp_listeners.lookup(&lkey);
        if (owner) {
            fresh.pid = owner->pid;
            __builtin_memcpy(fresh.comm, owner->comm, sizeof(fresh.comm));
        }
        tcp_conns.update(&sk, &fresh);
        bump(2);
        return 0;
    }

    struct conn *conn = tcp_conns.lookup(&sk);
    if (!conn)
        return 0;  // opened before the sidecar started
    if (to == TCP_FIN_WAIT1 && from == TCP_ESTABLISHED) {
        conn->closed_by = CLOSED_BY_LOCAL;
        return 0;
    }
    if (to == TCP_CLOSE_WAIT) {
        conn->closed_by = CLOSED_BY_REMOTE;
        return 0;
    }
    if (to != TCP_ESTABLISHED && to != TCP_CLOSE)
        return 0;

    struct tcp_event event = {};
    event.time_ns = now;
    event.ip_version = args->family == AF_INET ? 4 : 6;
    copy_addrs(event.local, event.remote, args->family, args->saddr, args->daddr, args->saddr_v6,
               args->daddr_v6);
    event.local_port = args->sport;
    event.remote_port = args->dport;
    event.pid = conn->pid;
    __builtin_memcpy(event.comm, conn->comm, sizeof(event.comm));
    event.role = conn->role;

    if (to == TCP_ESTABLISHED) {
        conn->established_ns = now;
        event.kind = conn->role == ROLE_CLIENT ? EV_CONNECT : EV_ACCEPT;
        event.latency_ns = now - conn->start_ns;
        emit(&event);
        return 0;
    }
    // to == TCP_CLOSE
    event.retransmits = conn->retransmits;
    event.reset = conn->reset;
    event.closed_by = conn->closed_by;
    if (from == TCP_SYN_SENT) {
        event.kind = EV_CONNECT_FAILED;
        event.latency_ns = now - conn->start_ns;
    } else if (conn->established_ns) {
        event.kind = EV_CLOSE;
        event.duration_ns = now - conn->established_ns;
        // Without FIN states on the way, the connection was aborted.
        if (!conn->closed_by && !conn->reset && from == TCP_ESTABLISHED)
            event.reset = RESET_RECEIVED;
    }
    tcp_conns.delete(&sk);
    if (event.kind)
        emit(&event);
    return 0;
}

#endif

#ifdef HAVE_RETRANSMIT_TP
TRACEPOINT_PROBE(tcp, tcp_retransmit_skb) {
    u64 sk = (u64)args->skaddr;
    struct retrans_key key = {};
    key.ip_version = args->family == AF_INET ? 4 : 6;
    copy_addrs(key.local, key.remote, args->family, args->saddr, args->daddr, args->saddr_v6,
               args->daddr_v6);
    key.local_port = args->sport;
    key.remote_port = args->dport;
    struct conn *conn = tcp_conns.lookup(&sk);
    if (conn)
        conn->retransmits += 1;
    struct retrans_value *value = tcp_retransmits.lookup(&key);
    if (value) {
        __sync_fetch_and_add(&value->count, 1);
        value->last_ns = bpf_ktime_get_ns();
        return 0;
    }
    struct retrans_value fresh = {.count = 1, .last_ns = bpf_ktime_get_ns()};
    if (conn) {
        fresh.pid = conn->pid;
        fresh.role = conn->role;
        __builtin_memcpy(fresh.comm, conn->comm, sizeof(fresh.comm));
    }
    tcp_retransmits.update(&key, &fresh);
    return 0;
}
#endif

static __always_inline void mark_reset(u64 sk, u8 how) {
    struct conn *conn = tcp_conns.lookup(&sk);
    if (conn)
        conn->reset |= how;
}

// The reset tracepoints' argument structs name types that older kernel headers
// lack (enum sk_rst_reason), so the socket pointer is read at the offset the
// running kernel's tracefs format gives, passed in by the loader.
#ifdef RECEIVE_RESET_SKADDR_OFFSET
int on_tcp_receive_reset(void *ctx) {
    mark_reset(*(u64 *)((u8 *)ctx + RECEIVE_RESET_SKADDR_OFFSET), RESET_RECEIVED);
    return 0;
}
#endif

#ifdef SEND_RESET_SKADDR_OFFSET
int on_tcp_send_reset(void *ctx) {
    u64 sk = *(u64 *)((u8 *)ctx + SEND_RESET_SKADDR_OFFSET);
    if (sk)  // 0 when no socket matched, e.g. a refused SYN
        mark_reset(sk, RESET_SENT);
    return 0;
}
#endif

#ifdef HAVE_KPROBES
// kprobe/kretprobe on tcp_v4_connect/tcp_v6_connect: what the tracepoints cannot
// see, connects that fail before any state change (no route, no source port).
// The destination comes from the sockaddr argument, a UAPI struct.
#include <uapi/linux/in6.h>

struct connect_call {
    u64 uaddr;
    u32 pid;
    u16 family;
    u16 pad;
    char comm[16];
};

BPF_HASH(tcp_connect_calls, u32, struct connect_call, 10240);

static __always_inline int enter_connect(struct pt_regs *ctx, u16 family) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = id;
    struct connect_call call = {.uaddr = PT_REGS_PARM2(ctx), .pid = id >> 32, .family = family};
    bpf_get_current_comm(&call.comm, sizeof(call.comm));
    tcp_connect_calls.update(&tid, &call);
    return 0;
}

int on_tcp_v4_connect(struct pt_regs *ctx) { return enter_connect(ctx, AF_INET); }
int on_tcp_v6_connect(struct pt_regs *ctx) { return enter_connect(ctx, AF_INET6); }

int on_tcp_connect_return(struct pt_regs *ctx) {
    u32 tid = bpf_get_current_pid_tgid();
    struct connect_call *call = tcp_connect_calls.lookup(&tid);
    if (!call)
        return 0;
    int ret = PT_REGS_RC(ctx);
    if (ret < 0) {
        struct tcp_event event = {};
        event.time_ns = bpf_ktime_get_ns();
        event.kind = EV_CONNECT_ERROR;
        event.role = ROLE_CLIENT;
        event.error = -ret;
        event.pid = call->pid;
        __builtin_memcpy(event.comm, call->comm, sizeof(event.comm));
        if (call->family == AF_INET) {
            struct sockaddr_in sa = {};
            bpf_probe_read_kernel(&sa, sizeof(sa), (void *)call->uaddr);
            event.ip_version = 4;
            __builtin_memcpy(event.remote, &sa.sin_addr, 4);
            event.remote_port = bpf_ntohs(sa.sin_port);
        } else {
            struct sockaddr_in6 sa = {};
            bpf_probe_read_kernel(&sa, sizeof(sa), (void *)call->uaddr);
            event.ip_version = 6;
            __builtin_memcpy(event.remote, &sa.sin6_addr, 16);
            event.remote_port = bpf_ntohs(sa.sin6_port);
        }
        emit(&event);
    }
    tcp_connect_calls.delete(&tid);
    return 0;
}
#endif
