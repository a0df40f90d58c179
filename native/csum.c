/* Internet checksum (RFC 1071) with RFC 1624 incremental updates, and SipHash.
 * Twins: pylvs/_pure/checksum.py, pylvs/_pure/siphash.py. */
#include <string.h>
#include "pylvs_native.h"

static inline uint16_t fold64(uint64_t s)
{
    s = (s & 0xFFFFFFFFu) + (s >> 32);
    s = (s & 0xFFFFFFFFu) + (s >> 32);
    s = (s & 0xFFFF) + (s >> 16);
    s = (s & 0xFFFF) + (s >> 16);
    return (uint16_t)s;
}

uint64_t pn_csum_partial(const uint8_t *d, size_t n, uint64_t s)
{
    /* 32-bit loads in the machine's byte order summed into 64 bits (no carry lost for any length we see),
     * folded, then byte-swapped on a little-endian machine: the one's-complement sum is independent of
     * byte order up to that swap (RFC 1071 §2(B)).  The value is congruent to the big-endian word sum
     * modulo 0xFFFF, which is all a checksum keeps (fold it with pn_csum_fold). */
    size_t i = 0;
    uint64_t a0 = 0, a1 = 0;
    for (; i + 16 <= n; i += 16) {
        uint32_t w[4];
        memcpy(w, d + i, 16);
        a0 += (uint64_t)w[0] + w[1];
        a1 += (uint64_t)w[2] + w[3];
    }
    for (; i + 4 <= n; i += 4) {
        uint32_t w;
        memcpy(&w, d + i, 4);
        a0 += w;
    }
    uint64_t r = fold64(a0 + a1); /* each < 2^63 for any n below 2^33 bytes */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    r = ((r & 0xFF) << 8) | (r >> 8);
#endif
    for (; i + 2 <= n; i += 2)
        r += (uint32_t)d[i] << 8 | d[i + 1];
    if (i < n)
        r += (uint32_t)d[i] << 8; /* an odd last byte is the high half of a zero-padded word (RFC 1071 §4.1) */
    return s + r;
}

uint16_t pn_csum_fold(uint64_t s) { return (uint16_t)~pn_fold16(s); }

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). */
uint16_t pn_csum_replace2(uint16_t check, uint16_t old, uint16_t new_)
{
    uint64_t s = (uint16_t)~check + (uint16_t)~old + (uint64_t) new_;
    return (uint16_t)~pn_fold16(s);
}

uint16_t pn_csum_replace4(uint16_t check, uint32_t old, uint32_t new_)
{
    uint64_t s = (uint16_t)~check + (uint16_t)~(old >> 16) + (uint16_t)~old + (new_ >> 16) + (new_ & 0xFFFF);
    return (uint16_t)~pn_fold16(s);
}

/* The partial-checksum (offload) case: a frame the local stack handed over with CHECKSUM_PARTIAL
 * (AF_PACKET TP_STATUS_CSUMNOTREADY) carries only the pseudo-header sum in its TCP/UDP checksum field.
 * Recompute the field in full from the pseudo header and the segment (RFC 793 §3.1, RFC 768), which is right
 * whatever partial value it held.  0 when the frame is not an unfragmented IPv4 TCP/UDP one (left alone). */
int pn_complete_l4_checksum(uint8_t *f, size_t len)
{
    if (len < 34 || f[12] != 0x08 || f[13] != 0x00 || f[14] >> 4 != 4)
        return 0;
    size_t ihl = (size_t)(f[14] & 0x0F) * 4;
    size_t total = (size_t)f[16] << 8 | f[17];
    uint8_t proto = f[23];
    size_t l4 = 14 + ihl, end = 14 + total, off;
    if (ihl < 20 || total < ihl || end > len || (((size_t)f[20] << 8 | f[21]) & 0x3FFF))
        return 0;
    if (proto == 6 && end - l4 >= 20)
        off = l4 + 16;
    else if (proto == 17 && end - l4 >= 8)
        off = l4 + 6;
    else
        return 0;
    f[off] = f[off + 1] = 0;
    uint64_t s = pn_csum_partial(f + 26, 8, 0) + proto + (end - l4);
    uint16_t c = pn_csum_fold(pn_csum_partial(f + l4, end - l4, s));
    if (proto == 17 && c == 0)
        c = 0xFFFF; /* RFC 768: a computed 0 is sent as all ones */
    f[off] = (uint8_t)(c >> 8);
    f[off + 1] = (uint8_t)c;
    return 1;
}

/* ---------------------------------------------------------------- SipHash-c-d, the reference algorithm */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                           \
    do {                                                                                                   \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                                         \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                                            \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                                            \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                                         \
    } while (0)

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t pn_siphash(const uint8_t key[16], const uint8_t *in, size_t len, int c_rounds, int d_rounds)
{
    uint64_t k0 = le64(key), k1 = le64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    size_t end = len - (len % 8);
    for (size_t i = 0; i < end; i += 8) {
        uint64_t m = le64(in + i);
        v3 ^= m;
        for (int r = 0; r < c_rounds; r++)
            SIPROUND;
        v0 ^= m;
    }
    uint64_t b = ((uint64_t)len) << 56;
    for (size_t i = 0; i < len % 8; i++)
        b |= (uint64_t)in[end + i] << (8 * i);
    v3 ^= b;
    for (int r = 0; r < c_rounds; r++)
        SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    for (int r = 0; r < d_rounds; r++)
        SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}
