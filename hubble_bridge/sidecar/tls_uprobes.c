// uprobes on OpenSSL: the plaintext of SSL_write/SSL_read (and their _ex forms) when it starts an HTTP/1.x
// message, and SSL_set_fd, which names the socket behind each SSL object.
//
// The entry probe remembers the call's arguments per thread; the return probe reads what was really
// written or read (the return value, or *written / *readbytes for the _ex forms) and sends at most
// PAYLOAD_BYTES of it through a ring buffer, only when its first bytes look like an HTTP/1.x start:
// body chunks and TLS traffic of other protocols stay in the kernel (counted).
//
// Only the probed functions' arguments and user memory are read: no kernel structures.
// PAYLOAD_BYTES (a power of two), CALL_MAP_SIZE and RINGBUF_PAGES are defined by the loader.
#include <uapi/linux/ptrace.h>
#include "l7_http_start.h"

enum { KIND_DATA = 1, KIND_SET_FD = 2 };

struct call {
    u64 ssl;
    u64 buf;
    u64 count_ptr;  // the _ex forms' size_t *written / *readbytes; 0 for SSL_write / SSL_read
};

struct tls_event {
    u64 time_ns;  // CLOCK_MONOTONIC, when the call returned
    u64 ssl;
    u32 pid;
    s32 fd;       // KIND_SET_FD only
    u32 length;   // bytes in data
    u8 kind;
    u8 written;   // 1: SSL_write (this process sent it), 0: SSL_read (it received it)
    u8 pad[2];
    char comm[16];
    u8 data[PAYLOAD_BYTES];
};

BPF_HASH(tls_calls, u64, struct call, CALL_MAP_SIZE);  // thread -> call in progress
BPF_RINGBUF_OUTPUT(tls_events, RINGBUF_PAGES);

// 0: events sent, 1: events lost (ring buffer full), 2: calls not tracked (tls_calls full),
// 3: calls skipped (not an HTTP/1.x start)
BPF_PERCPU_ARRAY(tls_stats, u64, 4);

static __always_inline void bump(int index) {
    u64 *value = tls_stats.lookup(&index);
    if (value)
        *value += 1;
}

static __always_inline void remember(struct pt_regs *ctx, u64 count_ptr) {
    struct call call = {};
    call.ssl = PT_REGS_PARM1(ctx);
    call.buf = PT_REGS_PARM2(ctx);
    call.count_ptr = count_ptr;
    u64 thread = bpf_get_current_pid_tgid();
    if (tls_calls.update(&thread, &call) != 0)
        bump(2);
}

static __always_inline int finish(struct pt_regs *ctx, u8 written) {
    u64 thread = bpf_get_current_pid_tgid();
    struct call *call = tls_calls.lookup(&thread);
    if (!call)
        return 0;
    struct call done = *call;
    tls_calls.delete(&thread);
    s64 rc = PT_REGS_RC(ctx);
    u64 length = 0;
    if (done.count_ptr) {
        if (rc != 1)
            return 0;
        bpf_probe_read_user(&length, sizeof(length), (void *)done.count_ptr);
    } else {
        if (rc <= 0)
            return 0;
        length = rc;
    }
    if (length < 8)
        return 0;
    u8 head[8] = {};
    if (bpf_probe_read_user(head, sizeof(head), (void *)done.buf) != 0 || !http_start(head)) {
        bump(3);
        return 0;
    }
    struct tls_event *event = tls_events.ringbuf_reserve(sizeof(struct tls_event));
    if (!event) {
        bump(1);
        return 0;
    }
    u32 copy = length > PAYLOAD_BYTES ? PAYLOAD_BYTES : length;
    event->time_ns = bpf_ktime_get_ns();
    event->ssl = done.ssl;
    event->pid = thread >> 32;
    event->fd = -1;
    event->length = copy;
    event->kind = KIND_DATA;
    event->written = written;
    bpf_get_current_comm(&event->comm, sizeof(event->comm));
    bpf_probe_read_user(event->data, copy & (PAYLOAD_BYTES - 1) ? copy & (PAYLOAD_BYTES - 1) : PAYLOAD_BYTES,
                        (void *)done.buf);
    tls_events.ringbuf_submit(event, 0);
    bump(0);
    return 0;
}

int on_ssl_write(struct pt_regs *ctx) { remember(ctx, 0); return 0; }
int on_ssl_write_ex(struct pt_regs *ctx) { remember(ctx, PT_REGS_PARM4(ctx)); return 0; }
int on_ssl_read(struct pt_regs *ctx) { remember(ctx, 0); return 0; }
int on_ssl_read_ex(struct pt_regs *ctx) { remember(ctx, PT_REGS_PARM4(ctx)); return 0; }
int on_ssl_write_return(struct pt_regs *ctx) { return finish(ctx, 1); }
int on_ssl_read_return(struct pt_regs *ctx) { return finish(ctx, 0); }

int on_ssl_set_fd(struct pt_regs *ctx) {
    struct tls_event *event = tls_events.ringbuf_reserve(sizeof(struct tls_event));
    if (!event) {
        bump(1);
        return 0;
    }
    u64 thread = bpf_get_current_pid_tgid();
    event->time_ns = bpf_ktime_get_ns();
    event->ssl = PT_REGS_PARM1(ctx);
    event->pid = thread >> 32;
    event->fd = PT_REGS_PARM2(ctx);
    event->length = 0;
    event->kind = KIND_SET_FD;
    event->written = 0;
    bpf_get_current_comm(&event->comm, sizeof(event->comm));
    tls_events.ringbuf_submit(event, 0);
    bump(0);
    return 0;
}
