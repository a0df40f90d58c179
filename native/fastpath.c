/* The established-flow fast path: a batch of frames in one buffer, each looked up and rewritten in place
 * the way the slow path (pylvs/core/pipeline.py) would, for the packets whose outcome it has already
 * decided: a flow marked FAST (TCP handed over at its SYN or in ESTABLISHED, with its TOA done; or UDP), a
 * segment whose state move IPVS's tables decide (with tcp_track: the handshake's SYN-ACK and ACK, the
 * teardown; without: ACK set and SYN, FIN, RST clear), a TTL above 1, a size within the egress MTU.
 * Anything else is punted, untouched, with a reason.
 *
 * The edits replay the slow path's own sequence (TTL, then addresses and ports field by field, each
 * patching the checksums per RFC 1624 and skipped when unchanged), so the output is byte-identical to it;
 * tests/golden/test_golden_fastpath.py checks exactly that, tests/property/test_native_diff.py holds C and
 * the twin (pylvs/_pure/flowtable.py) together, native/harness.c runs it under the sanitizers. */
#include <string.h>
#include "pylvs_native.h"

#define ETH_HLEN 14
#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_ACK 0x10

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }

/* Patch the L4 checksum at csum for a changed run of bytes: UDP's 0 means "none" and stays 0, a computed
 * UDP 0 is sent as 0xFFFF (RFC 768).  A partial checksum (udp == PARTIAL) holds the pseudo-header sum itself,
 * not its complement: it moves the other way, as the kernel's inet_proto_csum_replace4 does for
 * CHECKSUM_PARTIAL, and its 0 means nothing special. */
#define PARTIAL 2
static void patch_l4(uint8_t *csum, int udp, const uint8_t *old, const uint8_t *new_, size_t n)
{
    uint16_t c = rd16(csum);
    if (udp == PARTIAL) {
        wr16(csum, (uint16_t)~pn_csum_replace_bytes((uint16_t)~c, old, new_, n));
        return;
    }
    if (udp && c == 0)
        return;
    c = pn_csum_replace_bytes(c, old, new_, n);
    if (udp && c == 0)
        c = 0xFFFF;
    wr16(csum, c);
}

static void set_addr(uint8_t *ip, uint8_t *l4csum, int udp, int field, uint32_t addr)
{
    uint8_t old[4];
    memcpy(old, ip + field, 4);
    if (memcmp(old, &addr, 4) == 0)
        return;
    memcpy(ip + field, &addr, 4);
    wr16(ip + 10, pn_csum_replace_bytes(rd16(ip + 10), old, (const uint8_t *)&addr, 4));
    patch_l4(l4csum, udp, old, (const uint8_t *)&addr, 4);
}

/* A port is not in the pseudo header: a partial checksum is left alone (the sender sums the L4 header as it
 * finally is, RFC 793 §3.1). */
static void set_port(uint8_t *port, uint8_t *l4csum, int udp, uint16_t value)
{
    uint8_t old[2];
    memcpy(old, port, 2);
    if (memcmp(old, &value, 2) == 0)
        return;
    memcpy(port, &value, 2);
    if (udp != PARTIAL)
        patch_l4(l4csum, udp, old, (const uint8_t *)&value, 2);
}

/* The next TCP option at *at, walked as a receiving TCP walks them (RFC 9293 3.1;
 * pylvs.core.packet.iter_tcp_options): 1 with its kind and length (a NOP is one byte), or 0 at the end, at an
 * EOL or at a malformed option, with *at left there (== len only at a clean end). */
static int next_option(const uint8_t *opt, size_t len, size_t *at, uint8_t *kind, uint8_t *olen)
{
    size_t i = *at;
    if (i >= len || opt[i] == 0)
        return 0;
    if (opt[i] == 1) {
        *kind = 1, *olen = 1;
        return 1;
    }
    if (i + 1 >= len || opt[i + 1] < 2 || i + opt[i + 1] > len)
        return 0;
    *kind = opt[i], *olen = opt[i + 1];
    return 1;
}

/* Is kind among the TCP options (up to the first EOL or malformed one, where a receiver stops too)? */
static int has_option(const uint8_t *opt, size_t len, uint8_t kind)
{
    uint8_t k, l;
    for (size_t i = 0; next_option(opt, len, &i, &k, &l); i += l)
        if (k == kind)
            return 1;
    return 0;
}

/* A frame between the two halves of the work: parsed and validated, its key hashed. */
typedef struct {
    uint8_t *base, *f, *ip, *l4, *csum;
    size_t total, doff;
    uint64_t hash;
    uint32_t src, dst, link;
    uint16_t sport, dport;
    uint8_t proto, flags;
} pkt;

/* First half: checks that need only the frame (what the slow path's parser checks), and the key's hash.
 * Returns a punt reason, or -1 when the frame is a well-formed IPv4 TCP/UDP datagram for us. */
static int parse(pn_table *t, uint8_t *buf, size_t buflen, pn_desc *d, int ifindex, pkt *p)
{
    const pn_iface *in = &t->ifaces[ifindex];
    if ((size_t)d->off > buflen || (size_t)d->len > buflen - d->off)
        return PN_PUNT_MALFORMED;
    uint8_t *f = buf + d->off;
    size_t len = d->len;
    if (len < ETH_HLEN || memcmp(f, in->mac, 6) != 0 || f[12] != 0x08 || f[13] != 0x00)
        return PN_PUNT_NOT_IPV4;
    uint8_t *ip = f + ETH_HLEN;
    size_t avail = len - ETH_HLEN;
    if (avail < 20 || ip[0] >> 4 != 4 || (ip[0] & 0x0F) < 5)
        return PN_PUNT_MALFORMED;
    if ((ip[0] & 0x0F) != 5)
        return PN_PUNT_IP_OPTIONS;
    size_t total = rd16(ip + 2);
    if (total < 20 || total > avail || pn_csum_fold(pn_csum_partial(ip, 20, 0)) != 0)
        return PN_PUNT_MALFORMED;
    if (rd16(ip + 6) & 0x3FFF)
        return PN_PUNT_FRAGMENT;
    uint8_t proto = ip[9];
    uint8_t *l4 = ip + 20;
    size_t l4len = total - 20;
    p->flags = 0;
    p->doff = 0;
    /* The pseudo-header (RFC 793 §3.1): addresses, protocol, L4 length. */
    /* The L4 checksum is verified unless the kernel says it checked it already, or it is not computed yet (a
     * partial one: whoever sends the frame on finishes it): summing a 64 KB super-frame again is what the
     * offloads exist to avoid. */
    int trusted = (d->flags & (PN_CSUM_PARTIAL | PN_CSUM_VALID)) != 0;
    if (proto == 6) {
        if (l4len < 20)
            return PN_PUNT_MALFORMED;
        p->doff = (size_t)(l4[12] >> 4) * 4;
        if (p->doff < 20 || p->doff > l4len ||
            (!trusted && pn_csum_fold(pn_csum_partial(l4, l4len, pn_csum_partial(ip + 12, 8, 0) + proto + l4len))))
            return PN_PUNT_MALFORMED;
        p->flags = l4[13];
        p->csum = l4 + 16;
    } else if (proto == 17) {
        if (l4len < 8 || rd16(l4 + 4) != l4len)
            return PN_PUNT_MALFORMED;
        if (!trusted && rd16(l4 + 6) != 0 &&
            pn_csum_fold(pn_csum_partial(l4, l4len, pn_csum_partial(ip + 12, 8, 0) + proto + l4len)) != 0)
            return PN_PUNT_MALFORMED;
        p->csum = l4 + 6;
    } else {
        return PN_PUNT_PROTO;
    }
    /* A super-frame passes whole only as what the kernel can segment again: TCP or UDP (USO) over IPv4 with a
     * partial checksum.  Anything else (UFO, a type that does not match the protocol) is for the slow path. */
    if (d->gso_type) {
        uint8_t g = d->gso_type & (uint8_t)~PN_GSO_ECN;
        if (!(d->flags & PN_CSUM_PARTIAL) || d->gso_size == 0 ||
            !((g == PN_GSO_TCPV4 && proto == 6) || (g == PN_GSO_UDP_L4 && proto == 17)))
            return PN_PUNT_GSO;
    }
    p->base = buf;
    p->f = f;
    p->ip = ip;
    p->l4 = l4;
    p->total = total;
    p->proto = proto;
    memcpy(&p->src, ip + 12, 4);
    memcpy(&p->dst, ip + 16, 4);
    memcpy(&p->sport, l4, 2);
    memcpy(&p->dport, l4 + 2, 2);
    p->hash = pn_key_hash(t, proto, p->src, p->sport, p->dst, p->dport);
    return -1;
}

/* Are the TCP options well formed to their very end (no EOL, nothing malformed), with no TOA-looking option?
 * Then the slow path's insert_toa would rebuild them as they are behind its TOA, 8 bytes longer, and so does
 * the fast path; anything else is left to the slow path. */
static int options_clean(const uint8_t *opt, size_t len, uint8_t kind)
{
    uint8_t k, l;
    size_t i = 0;
    for (; next_option(opt, len, &i, &k, &l); i += l)
        if (k == kind && (l == 8 || l == 20))
            return 0;
    return i == len;
}

/* Where the MSS option (kind 2, length 4) sits among the options, as clamp_mss finds it; -1 if none. */
static long find_mss(const uint8_t *opt, size_t len)
{
    uint8_t k, l;
    for (size_t i = 0; next_option(opt, len, &i, &k, &l); i += l)
        if (k == 2 && l == 4)
            return (long)i;
    return -1;
}

/* The TCP checksum from scratch over a segment of seg bytes (pylvs.core.toa.fix_tcp_checksum). */
static void tcp_checksum(uint8_t *ip, uint8_t *l4, size_t seg)
{
    l4[16] = l4[17] = 0;
    uint64_t s = pn_csum_partial(ip + 12, 4, 0) + pn_csum_partial(ip + 16, 4, 0) + 6 + seg;
    wr16(l4 + 16, pn_csum_fold(pn_csum_partial(l4, seg, s)));
}

/* Second half: the flow, the decision, the rewrite.  Returns a punt reason, or -1 when forwarded. */
static int finish(pn_table *t, pn_desc *d, pkt *p, double now)
{
    int64_t link = pn_lookup_from(t, p->link, p->proto, p->src, p->sport, p->dst, p->dport);
    if (link < 0)
        return PN_PUNT_NO_FLOW;
    pn_entry *e = &t->e[link >> 1];
    int dir = (int)(link & 1);
    uint8_t *ip = p->ip, *l4 = p->l4, *csum = p->csum, *f = p->f;
    size_t total = p->total;
    int udp = p->proto == 17; /* how the L4 checksum is patched: TCP (0), UDP (1: 0 = none), or PARTIAL */
    if (!(e->flags & PN_F_FAST))
        return PN_PUNT_NOT_FAST;
    if (e->expires <= now)
        return PN_PUNT_EXPIRED;
    /* TCP: a segment that changes state is the slow path's, unless the tables are here (tcp_track); even then
     * a client's SYN (scheduling, connection reuse), a server's SYN without ACK and a segment with neither ACK
     * nor RST are.  The server's SYN-ACK of a flow the slow path handed over at its SYN is a plain state move
     * (IPVS's OUTPUT table), like the handshake's last ACK. */
    int new_state = -1, output_seen = 0;
    if (p->proto == 6) {
        if (!t->tcp_track) {
            if ((p->flags & (TH_SYN | TH_FIN | TH_RST)) || !(p->flags & TH_ACK))
                return PN_PUNT_TCP_FLAGS;
        } else {
            if (((p->flags & TH_SYN) && !(dir == PN_DIR_OUT && (p->flags & TH_ACK))) ||
                !(p->flags & (TH_ACK | TH_RST)))
                return PN_PUNT_TCP_FLAGS;
            /* IPVS tcp_state_idx: RST, then SYN, then FIN, then ACK; an output packet of a NOOUTPUT flow switches
             * it to the full tables (set_tcp_state). */
            int cls = (p->flags & TH_RST) ? 3 : (p->flags & TH_SYN) ? 0 : (p->flags & TH_FIN) ? 1 : 2;
            int tbl = dir == PN_DIR_IN ? e->in_table : 1;
            output_seen = dir == PN_DIR_OUT && e->in_table == 2;
            uint8_t cur = e->state < PN_TCP_NSTATES ? e->state : 0;
            new_state = t->tcp_next[tbl <= 2 ? tbl : 0][cls][cur];
            if ((new_state != e->state || output_seen) && t->nevents >= PN_EVENTS_MAX)
                return PN_PUNT_TCP_FLAGS; /* no room to tell the slow path: let it do this one */
        }
    }
    int routed = e->mode != PN_DR;
    int egress = dir == PN_DIR_IN ? e->out_if : e->in_if;
    if (egress >= PN_MAX_IFACES || !t->ifaces[egress].used)
        return PN_PUNT_IFACE;
    const pn_iface *out = &t->ifaces[egress];
    if (routed && ip[8] <= 1)
        return PN_PUNT_TTL;
    int encap = dir == PN_DIR_IN && e->mode == PN_TUN;
    /* A super-frame goes out whole only where its port takes virtio-net headers, and never into IP-in-IP: a
     * virtio-net header has no type for an IPIP GSO frame.  The slow path cuts it up (counted). */
    if (d->gso_type && (!out->offload || encap))
        return PN_PUNT_GSO;
    /* Over the egress MTU, or past what an IPv4 total length can say once encapsulated: the slow path
     * decides (ICMP fragmentation needed, or fragments).  A super-frame is measured by the segments it will
     * become. */
    size_t wire = total;
    if (d->gso_type) {
        size_t seg = 20 + (p->proto == 6 ? p->doff : 8) + d->gso_size;
        wire = seg < total ? seg : total;
    }
    if (wire + (encap ? 20 : 0) > (out->mtu < 65535 ? out->mtu : 65535))
        return PN_PUNT_MTU;
    if (dir == PN_DIR_IN && e->mode == PN_FULLNAT && p->proto == 6 && e->toa_kind &&
        has_option(l4 + 20, p->doff - 20, e->toa_kind))
        return PN_PUNT_TOA;
    /* The frame's offset as parsed (p->f), not re-read from the descriptor: nothing the rewrite touches can
     * move it. */
    size_t off = (size_t)(f - p->base);
    if (encap && off < 20)
        return PN_PUNT_HEADROOM;
    /* FULLNAT with TOA, as the slow path does it (pipeline.py _toa, _toa_due, _forward_out): the TOA goes
     * into the client's ACK that completes the handshake (ACK, no RST, in SYN_RECV), once; a server's SYN-ACK
     * has its MSS lowered by the TOA's length so the grown segments still fit.  Only the plain cases are done
     * here (clean options, room in the header and the MTU, a frame that is not a super-frame); the others, and
     * a full event buffer, are the slow path's. */
    int toa_ins = 0;
    long mss_at = -1;
    if (p->proto == 6 && e->mode == PN_FULLNAT && e->toa_kind) {
        if (dir == PN_DIR_IN && (e->flags & PN_F_TOA) && t->tcp_track && !(p->flags & TH_RST) &&
            (p->flags & TH_ACK) && e->state == PN_TCP_SR) {
            if (d->gso_type || off < PN_TOA_LEN || p->doff + PN_TOA_LEN > 60 || total + PN_TOA_LEN > out->mtu ||
                !options_clean(l4 + 20, p->doff - 20, e->toa_kind))
                return PN_PUNT_TOA;
            toa_ins = 1;
        } else if (dir == PN_DIR_OUT && (p->flags & TH_SYN)) {
            if (d->gso_type)
                return PN_PUNT_TOA;
            mss_at = find_mss(l4 + 20, p->doff - 20);
            if (mss_at >= 0 && rd16(l4 + 20 + mss_at + 2) <= PN_TOA_LEN)
                mss_at = -1; /* clamp_mss leaves an MSS this small alone */
        }
        if ((toa_ins || mss_at >= 0) && t->nevents >= PN_EVENTS_MAX)
            return PN_PUNT_TOA; /* no room to tell the slow path */
    }

    /* Decided: forward.  From here on the frame is edited.  A partial checksum stays partial where the egress
     * port takes it so (the pseudo-header part kept right below); elsewhere, or when it is about to be
     * wrapped in IP-in-IP, it is finished first, exactly as the slow path would. */
    if ((d->flags & PN_CSUM_PARTIAL) && (!out->offload || encap || toa_ins || mss_at >= 0)) {
        pn_complete_l4_checksum(f, ETH_HLEN + total);
        d->flags &= (uint8_t)~PN_CSUM_PARTIAL;
    }
    if (d->flags & PN_CSUM_PARTIAL)
        udp = PARTIAL;
    if (new_state >= 0) {
        if (new_state != e->state || output_seen || toa_ins || mss_at >= 0)
            t->events[t->nevents++] = (uint32_t)(link >> 1) << 8 | (output_seen ? PN_EV_OUTPUT_SEEN : 0) |
                                      (toa_ins ? PN_EV_TOA : 0) | (mss_at >= 0 ? PN_EV_MSS : 0) |
                                      (uint32_t)new_state;
        e->state = (uint8_t)new_state;
        if (output_seen)
            e->in_table = 0;
        e->expires = now + t->tcp_to[new_state];
    } else {
        e->expires = now + (p->proto == 6 ? t->tcp_timeout : t->udp_timeout);
    }
    pn_counters *c = &t->dests[e->dest_id < t->ndests ? e->dest_id : 0];
    if (dir == PN_DIR_IN) {
        c->pkts_in++;
        c->bytes_in += total;
    } else {
        c->pkts_out++;
        c->bytes_out += total;
    }
    if (routed) {
        /* TTL − 1; the checksummed word is TTL|protocol (RFC 1624). */
        uint16_t w = rd16(ip + 8);
        ip[8]--;
        wr16(ip + 10, pn_csum_replace2(rd16(ip + 10), w, (uint16_t)(w - 0x100)));
    }
    if (dir == PN_DIR_IN) {
        if (e->mode == PN_FULLNAT) {
            set_addr(ip, csum, udp, 12, e->laddr);
            set_port(l4, csum, udp, e->lport);
        }
        if (e->mode == PN_NAT || e->mode == PN_FULLNAT) {
            set_addr(ip, csum, udp, 16, e->daddr);
            set_port(l4 + 2, csum, udp, e->dport);
        }
    } else {
        set_addr(ip, csum, udp, 12, e->vaddr);
        set_port(l4, csum, udp, e->vport);
        if (e->mode == PN_FULLNAT) {
            set_addr(ip, csum, udp, 16, e->caddr);
            set_port(l4 + 2, csum, udp, e->cport);
        }
    }
    if (mss_at >= 0) {
        /* clamp_mss: the MSS field patched in the checksum where it sits on a 16-bit boundary of the segment,
         * the checksum recomputed where it does not. */
        uint8_t *m = l4 + 20 + mss_at + 2;
        uint16_t old = rd16(m), nw = (uint16_t)(old - PN_TOA_LEN);
        wr16(m, nw);
        if ((m - l4) & 1)
            tcp_checksum(ip, l4, total - 20);
        else
            wr16(csum, pn_csum_replace2(rd16(csum), old, nw));
    }
    if (toa_ins) {
        /* insert_toa: the option first among the options.  The headers move 8 bytes to the left (the batch's
         * headroom) and the payload stays; doff and the total length grow, the IP checksum follows the length
         * (RFC 1624) and the TCP checksum is summed again, as the slow path does. */
        uint8_t *nf = f - PN_TOA_LEN;
        memmove(nf, f, ETH_HLEN + 40);
        f = nf;
        ip = f + ETH_HLEN;
        l4 = ip + 20;
        uint8_t *o = l4 + 20;
        o[0] = e->toa_kind;
        o[1] = PN_TOA_LEN;
        memcpy(o + 2, &e->cport, 2);
        memcpy(o + 4, &e->caddr, 4);
        l4[12] = (uint8_t)(((p->doff + PN_TOA_LEN) / 4) << 4 | (l4[12] & 0x0F));
        uint16_t ot = rd16(ip + 2), nt = (uint16_t)(ot + PN_TOA_LEN);
        wr16(ip + 2, nt);
        wr16(ip + 10, pn_csum_replace2(rd16(ip + 10), ot, nt));
        total += PN_TOA_LEN;
        tcp_checksum(ip, l4, total - 20);
        off -= PN_TOA_LEN;
        e->flags &= (uint8_t)~PN_F_TOA;
    }
    size_t len = ETH_HLEN + total; /* Ethernet padding is not ours to forward (RFC 894) */
    if (encap) {
        /* IP-in-IP (RFC 2003) as IPVS builds it: TOS, TTL and DF copied from the inner header, ID = inner ID. */
        uint8_t *nf = f - 20;
        memmove(nf, f, ETH_HLEN);
        uint8_t *o = nf + ETH_HLEN;
        o[0] = 0x45;
        o[1] = ip[1];
        wr16(o + 2, (uint16_t)(total + 20));
        memcpy(o + 4, ip + 4, 2);
        wr16(o + 6, rd16(ip + 6) & 0x4000);
        o[8] = ip[8];
        o[9] = 4;
        o[10] = o[11] = 0;
        memcpy(o + 12, &out->addr, 4);
        memcpy(o + 16, &e->daddr, 4);
        wr16(o + 10, pn_csum_fold(pn_csum_partial(o, 20, 0)));
        f = nf;
        off -= 20;
        len += 20;
    }
    memcpy(f, dir == PN_DIR_IN ? e->rs_mac : e->client_mac, 6);
    memcpy(f + 6, out->mac, 6);
    d->off = (uint32_t)off;
    d->len = (uint32_t)len;
    d->verdict = (int16_t)egress;
    return -1;
}

#define STAGE 32

static void record(pn_table *t, pn_desc *d, int r, uint32_t *punts)
{
    if (r < 0) {
        d->reason = 0;
        t->forwarded++;
    } else {
        d->verdict = -1;
        d->reason = (uint16_t)r;
        t->punts[r]++;
        (*punts)++;
    }
}

/* Can a group be parsed ahead of its rewrites?  Only if no frame's edits (including a TUN header written
 * into the 20 bytes before it) touch bytes another frame of the group reads: frames in ascending order with
 * at least 20 bytes between them, as pylvs.core.batch lays them out.  Anything else is processed one frame
 * at a time, so the result never depends on the layout. */
static int staged_ok(const pn_desc *d, uint32_t m)
{
    for (uint32_t j = 1; j < m; j++)
        if ((uint64_t)d[j - 1].off + d[j - 1].len + 20 > d[j].off)
            return 0;
    return 1;
}

/* The batch goes through in groups of STAGE frames, each group in three passes: parse and hash every
 * frame and prefetch its hash bucket; read the buckets and prefetch the entries they point to; then look
 * up, decide and rewrite.  With a table far larger than the caches, the two dependent memory reads of a
 * lookup then overlap across the group instead of stalling one frame at a time (the batching DPDK and VPP
 * use).  The first two passes change nothing, the last runs in arrival order, and frames that could see
 * each other's edits go one at a time (staged_ok), so the result is what one-at-a-time processing gives:
 * what the pure twin does. */
static uint32_t process(pn_table *t, uint8_t *buf, size_t buflen, pn_desc *desc, uint32_t n, int ifindex,
                        double now, int stop, uint32_t *consumed)
{
    uint32_t punts = 0;
    *consumed = n;
    int ok_if = ifindex >= 0 && ifindex < PN_MAX_IFACES && t->ifaces[ifindex].used;
    pkt pk[STAGE];
    int r[STAGE];
    for (uint32_t base = 0; base < n; base += STAGE) {
        uint32_t m = n - base < STAGE ? n - base : STAGE;
        pn_desc *dd = desc + base;
        if (ok_if && !staged_ok(dd, m)) {
            for (uint32_t j = 0; j < m; j++) {
                int rr = parse(t, buf, buflen, &dd[j], ifindex, &pk[0]);
                if (rr < 0) {
                    pk[0].link = t->buckets[pk[0].hash & t->mask];
                    rr = finish(t, &dd[j], &pk[0], now);
                }
                record(t, &dd[j], rr, &punts);
                if (stop && rr >= 0) {
                    *consumed = base + j + 1;
                    return punts;
                }
            }
            continue;
        }
        for (uint32_t j = 0; j < m; j++) {
            pn_desc *d = &dd[j];
            if (ok_if) {
                r[j] = parse(t, buf, buflen, d, ifindex, &pk[j]);
                if (r[j] < 0)
                    __builtin_prefetch(&t->buckets[pk[j].hash & t->mask]);
            } else {
                r[j] = PN_PUNT_IFACE;
            }
        }
        for (uint32_t j = 0; j < m; j++) {
            if (r[j] < 0) {
                pk[j].link = t->buckets[pk[j].hash & t->mask];
                if (pk[j].link != PN_NIL)
                    __builtin_prefetch(&t->e[PN_LSLOT(pk[j].link)]);
            }
        }
        /* A chain holds 1.5 entries on average at full load: where the first is not the one, prefetch the
         * next as well, so that miss overlaps across the group too. */
        for (uint32_t j = 0; j < m; j++) {
            uint32_t link = pk[j].link;
            if (r[j] < 0 && link != PN_NIL) {
                const pn_entry *e = &t->e[PN_LSLOT(link)];
                if (!pn_key_matches(e, PN_LDIR(link), pk[j].proto, pk[j].src, pk[j].sport, pk[j].dst, pk[j].dport)) {
                    pk[j].link = e->next[PN_LDIR(link)];
                    if (pk[j].link != PN_NIL)
                        __builtin_prefetch(&t->e[PN_LSLOT(pk[j].link)]);
                }
            }
        }
        for (uint32_t j = 0; j < m; j++) {
            if (r[j] < 0)
                r[j] = finish(t, &dd[j], &pk[j], now);
            record(t, &dd[j], r[j], &punts);
            if (stop && r[j] >= 0) {
                *consumed = base + j + 1;
                return punts;
            }
        }
    }
    return punts;
}

uint32_t pn_process(pn_table *t, uint8_t *buf, size_t buflen, pn_desc *desc, uint32_t n, int ifindex, double now)
{
    uint32_t consumed;
    return process(t, buf, buflen, desc, n, ifindex, now, 0, &consumed);
}

/* For a caller that must see every frame's effect in arrival order (the Director: a punted FIN or ARP
 * reply changes what the next frames of the batch should get): stop right after the first punt.  The first
 * two passes of a group change nothing, so frames parsed beyond the punt carry nothing into the next call. */
uint32_t pn_process_until_punt(pn_table *t, uint8_t *buf, size_t buflen, pn_desc *desc, uint32_t n, int ifindex,
                               double now)
{
    uint32_t consumed;
    process(t, buf, buflen, desc, n, ifindex, now, 1, &consumed);
    return consumed;
}
