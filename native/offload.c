/* Offload passthrough: the virtio-net header AF_PACKET (PACKET_VNET_HDR) and TAP (IFF_VNET_HDR) put before
 * each frame, read into a descriptor and written back from one, and the software segmentation of a GSO
 * super-frame for where it cannot go out whole (the slow path, TUN, an egress without offloads).
 * Twin: pylvs/_pure/offload.py. */
#include <string.h>
#include "pylvs_native.h"

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static inline void wr32(uint8_t *p, uint32_t v) { wr16(p, (uint16_t)(v >> 16)); wr16(p + 2, (uint16_t)v); }

/* Where a standard IPv4 TCP/UDP frame's L4 header and checksum field are: 1 and the offsets, or 0. */
static int l4_layout(const uint8_t *f, size_t len, size_t *l4, size_t *csum_off, uint8_t *proto)
{
    if (len < 34 || f[12] != 0x08 || f[13] != 0x00 || f[14] >> 4 != 4 || (f[14] & 0x0F) < 5)
        return 0;
    *l4 = 14 + (size_t)(f[14] & 0x0F) * 4;
    *proto = f[23];
    if (*proto == 6)
        *csum_off = 16;
    else if (*proto == 17)
        *csum_off = 6;
    else
        return 0;
    return *l4 + *csum_off + 2 <= len;
}

int pn_vnet_to_desc(const pn_vnet_hdr *h, uint8_t *f, size_t len, pn_desc *d)
{
    d->flags = 0;
    d->gso_type = PN_GSO_NONE;
    d->gso_size = 0;
    if (h->flags & PN_VNET_F_DATA_VALID)
        d->flags |= PN_CSUM_VALID;
    if (h->flags & PN_VNET_F_NEEDS_CSUM) {
        size_t l4, co;
        uint8_t proto;
        if (l4_layout(f, len, &l4, &co, &proto) && h->csum_start == l4 && h->csum_offset == co) {
            d->flags |= PN_CSUM_PARTIAL;
        } else {
            /* Partial somewhere the fast path does not look: finish it here, as skb_checksum_help does (the
             * sum from csum_start to the end, over the pseudo-header sum the field holds). */
            size_t s = h->csum_start, o = (size_t)h->csum_start + h->csum_offset;
            if (h->gso_type != PN_GSO_NONE || s > len || o + 2 > len)
                return -1;
            wr16(f + o, pn_csum_fold(pn_csum_partial(f + s, len - s, 0)));
        }
    }
    if (h->gso_type != PN_GSO_NONE) {
        /* The kernel's own super-frames always carry a partial checksum; one without cannot be cut up right. */
        if (!(d->flags & PN_CSUM_PARTIAL) || h->gso_size == 0)
            return -1;
        d->gso_type = h->gso_type;
        d->gso_size = h->gso_size;
    }
    return 0;
}

void pn_desc_to_vnet(const pn_desc *d, const uint8_t *f, size_t len, pn_vnet_hdr *h)
{
    memset(h, 0, sizeof(*h));
    size_t l4, co;
    uint8_t proto;
    if (!(d->flags & PN_CSUM_PARTIAL) || !l4_layout(f, len, &l4, &co, &proto))
        return;
    h->flags = PN_VNET_F_NEEDS_CSUM;
    h->csum_start = (uint16_t)l4;
    h->csum_offset = (uint16_t)co;
    if (d->gso_type != PN_GSO_NONE) {
        size_t hl = l4 + (proto == 6 ? (size_t)(f[l4 + 12] >> 4) * 4 : 8);
        h->gso_type = d->gso_type;
        h->gso_size = d->gso_size;
        h->hdr_len = (uint16_t)(hl < len ? hl : len);
    }
}

#define TH_FIN 0x01
#define TH_PSH 0x08
#define TH_CWR 0x80

int pn_gso_segment(const uint8_t *f, size_t len, const pn_desc *d, uint8_t *out, size_t outlen, uint32_t *lens,
                   uint32_t maxsegs)
{
    size_t l4, co;
    uint8_t proto;
    uint8_t g = d->gso_type & (uint8_t)~PN_GSO_ECN;
    if (!l4_layout(f, len, &l4, &co, &proto) || d->gso_size == 0)
        return -1;
    if (!((g == PN_GSO_TCPV4 && proto == 6) || (g == PN_GSO_UDP_L4 && proto == 17)))
        return -1; /* UFO would need IP fragments, IPv6 is not ours: refused, the caller counts it */
    size_t ihl = l4 - 14, total = rd16(f + 16);
    if (total < ihl || 14 + total > len || (rd16(f + 20) & 0x3FFF))
        return -1;
    size_t hl = proto == 6 ? (size_t)(f[l4 + 12] >> 4) * 4 : 8;
    if (hl < (proto == 6 ? 20u : 8u) || l4 + hl > 14 + total)
        return -1;
    size_t hdrs = l4 + hl, payload = 14 + total - hdrs, mss = d->gso_size;
    uint32_t nseg = payload ? (uint32_t)((payload + mss - 1) / mss) : 1;
    if (nseg > maxsegs || (size_t)nseg * hdrs + payload > outlen)
        return -1;
    uint16_t id = rd16(f + 18);
    uint32_t seq = proto == 6 ? rd32(f + l4 + 4) : 0;
    uint8_t tflags = proto == 6 ? f[l4 + 13] : 0;
    size_t at = 0;
    for (uint32_t i = 0; i < nseg; i++) {
        size_t pl = payload - (size_t)i * mss < mss ? payload - (size_t)i * mss : mss;
        uint8_t *s = out + at;
        memcpy(s, f, hdrs);
        memcpy(s + hdrs, f + hdrs + (size_t)i * mss, pl);
        uint8_t *ip = s + 14, *th = s + l4;
        wr16(ip + 2, (uint16_t)(ihl + hl + pl));
        wr16(ip + 4, (uint16_t)(id + i)); /* as inet_gso_segment numbers the segments */
        ip[10] = ip[11] = 0;
        wr16(ip + 10, pn_csum_fold(pn_csum_partial(ip, ihl, 0)));
        if (proto == 6) {
            wr32(th + 4, seq + (uint32_t)(i * mss));
            uint8_t fl = tflags;
            if (i + 1 < nseg)
                fl &= (uint8_t)~(TH_FIN | TH_PSH); /* tcp_gso_segment: FIN and PSH on the last segment only */
            if (i > 0)
                fl &= (uint8_t)~TH_CWR; /* CWR on the first only */
            th[13] = fl;
        } else {
            wr16(th + 4, (uint16_t)(hl + pl));
        }
        th[co] = th[co + 1] = 0;
        uint64_t pseudo = pn_csum_partial(ip + 12, 8, 0) + proto + hl + pl;
        uint16_t c = pn_csum_fold(pn_csum_partial(th, hl + pl, pseudo));
        if (proto == 17 && c == 0)
            c = 0xFFFF; /* RFC 768 */
        wr16(th + co, c);
        lens[i] = (uint32_t)(hdrs + pl);
        at += hdrs + pl;
    }
    return (int)nseg;
}
