// Shared by l7_filter.c and tls_uprobes.c (inlined by bccload.program_source).
// Whether 8 bytes start an HTTP/1.x message: the same test as http1.starts_message.
static __always_inline int http_start(const u8 *h) {
    u32 word = h[0] | (h[1] << 8) | (h[2] << 16) | ((u32)h[3] << 24);
#define W(a, b, c, d) ((u32)(a) | ((u32)(b) << 8) | ((u32)(c) << 16) | ((u32)(d) << 24))
    if (word == W('H', 'T', 'T', 'P'))
        return h[4] == '/' && h[5] == '1' && h[6] == '.';
    return word == W('G', 'E', 'T', ' ') || word == W('P', 'O', 'S', 'T') || word == W('P', 'U', 'T', ' ') ||
           word == W('H', 'E', 'A', 'D') || word == W('D', 'E', 'L', 'E') || word == W('P', 'A', 'T', 'C') ||
           word == W('O', 'P', 'T', 'I') || word == W('C', 'O', 'N', 'N') || word == W('T', 'R', 'A', 'C');
#undef W
}
