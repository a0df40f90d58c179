/* A standalone driver for the plain-C core (csum.c, flowtab.c, fastpath.c), built and run under
 * AddressSanitizer + UndefinedBehaviorSanitizer + LeakSanitizer by native/sanitize.sh.  No Python.
 * Sources: this file (the drivers and main), harness_ref.c (the reference models), harness_gen.c (the fast
 * path's random input) and harness.h (what they share).
 *
 *   harness [seed [iterations]]        (defaults: seed 1, 200000 iterations)
 *
 * Everything is driven by one deterministic PRNG, so a failure is replayed by rerunning with the seed it
 * prints.  Each check is against something written here independently of the core:
 *   - checksums: a byte-at-a-time one's-complement sum; RFC 1624 updates against recomputing from scratch;
 *   - SipHash: the paper's test vector, and a reference SipHash-c-d written here for random inputs;
 *   - flow table: a model (an array of flows indexed by slot, the documented slot policy: most recently
 *     freed first, else the next never-used one; the expiry sweep from a cursor over [0, high-water));
 *   - CHECKSUM_PARTIAL completion (pn_complete_l4_checksum): a reference from its documented meaning;
 *   - fast path: a reference classifier for the punt reason and a reference rewrite of every forwarded
 *     frame (after the partial-checksum completion its descriptor asks for), compared byte for byte over
 *     the whole buffer (the L4 checksum fields must verify instead, with UDP's 0 = "no checksum" kept and a
 *     computed 0 sent as 0xFFFF), plus counters and expiry updates; and every batch against the same
 *     frames processed one call at a time on a copy of the table.  Every buffer and descriptor array is
 *     malloc'd at its exact size, so ASan sees any access outside it.
 * On a mismatch it prints what and abort()s; on success one summary line starting "harness ok:".
 * Bugs it found (all fixed) are listed under "known bugs" below. */
#include "harness.h"

/* ---------------------------------------------------------------- failure reporting */

unsigned long long g_seed, g_iter;
const char *g_phase = "start";

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        FAIL("out of memory (%zu bytes)", n);
    return p;
}

/* Exactly n bytes (malloc(0) included), so ASan flags any access past them. */
uint8_t *exact_alloc(size_t n)
{
    uint8_t *p = malloc(n);
    if (!p && n)
        FAIL("out of memory (%zu bytes)", n);
    return p;
}

/* ---------------------------------------------------------------- known bugs
 *
 * Bugs this harness found in the core, all fixed since; the reference holds the core to the correct
 * behaviour, so a run fails on any of them again.
 *   KB1: TUN encapsulation when inner total + 20 > 65535 (egress MTU >= 65536, e.g. loopback's): the outer
 *        IPv4 total length wraps (65536 -> 0); should be punted PN_PUNT_MTU.
 *   KB2: pn_complete_l4_checksum() on a frame whose IHL is below 5: "L4" starts inside the IPv4 header
 *        and 2 bytes of it are overwritten; such a frame is not IPv4 TCP/UDP and should be left alone.
 *   KB3: pn_process() on descriptors that share bytes (the same frame twice, or a frame within the 20 bytes
 *        before a TUN frame): the staged passes parse a whole group before rewriting any of it, so the result
 *        is not what one-at-a-time processing (and the pure twin) gives, as fastpath.c says it is; e.g. one
 *        frame listed twice is forwarded twice, its TTL decremented twice.  Disjoint descriptors agree. */

/* ---------------------------------------------------------------- PRNG (splitmix64): the state */

uint64_t g_rs;

/* ---------------------------------------------------------------- statistics */

uint64_t st_csum, st_negzero, st_sip, st_ftops, st_forwards, st_punts, st_batches, st_frames;
uint64_t st_reason[PN_PUNT_NREASONS];
uint64_t st_fwd_mode[4][2]; /* [mode][dir] */
uint64_t st_fwd_udp0, st_fwd_big, st_fwd_udp_ffff, st_complete_ffff;

/* ---------------------------------------------------------------- checksums */

static void check_csum_once(void)
{
    g_phase = "csum";
    size_t len = pct(10) ? rn(8) : rn(2001);
    uint8_t *b = exact_alloc(len);
    switch (rn(8)) {
    case 0: memset(b, 0, len); break;
    case 1: memset(b, 0xFF, len); break;
    case 2: for (size_t i = 0; i < len; i++) b[i] = pct(90) ? 0 : (uint8_t)rnd64(); break;
    default: rfill(b, len);
    }
    uint32_t ref = ref_sum(b, len);
    uint64_t part = pn_csum_partial(b, len, 0);
    CHECK(pn_fold16(part) == ref, "pn_fold16(pn_csum_partial) len=%zu: %#x, reference %#x", len, pn_fold16(part), ref);
    CHECK(pn_csum_fold(part) == (uint16_t)~ref, "pn_csum_fold len=%zu: %#x, reference %#x", len,
          pn_csum_fold(part), (uint16_t)~ref);
    /* An initial value carries into the sum. */
    uint64_t init = rnd64() >> (8 + rn(56));
    CHECK(pn_fold16(pn_csum_partial(b, len, init)) == oc_add(pn_fold16(init), ref),
          "pn_csum_partial with initial %#" PRIx64 " len=%zu", init, len);
    /* Summing in two pieces split at an even offset is the same as in one. */
    if (len) {
        size_t k = rn((uint32_t)len + 1) & ~(size_t)1;
        uint64_t two = pn_csum_partial(b + k, len - k, pn_csum_partial(b, k, 0));
        CHECK(pn_fold16(two) == ref, "pn_csum_partial split at %zu of %zu", k, len);
    }

    /* RFC 1624 incremental updates, chained, each against recomputing from scratch.  Eqn. 3 never yields
     * 0xFFFF (-0) where a full recompute would give it for all-zero data: that one case is accepted and
     * counted, nothing else. */
    if (len >= 2) {
        uint16_t check = (uint16_t)~ref;
        int steps = 1 + (int)rn(4);
        for (int s = 0; s < steps; s++) {
            int kind = (int)rn(3);
            size_t off, flen;
            if (kind == 0 || (kind == 1 && len < 4)) {
                kind = 0;
                flen = 2;
            } else if (kind == 1) {
                flen = 4;
            } else {
                flen = rn((uint32_t)(len < 64 ? len : 64) + 1); /* odd lengths too */
            }
            off = rn((uint32_t)(len - flen) + 1) & ~(size_t)1;
            uint8_t old[64], neu[64];
            memcpy(old, b + off, flen);
            switch (rn(4)) {
            case 0: memset(neu, 0, flen); break;
            case 1: memset(neu, 0xFF, flen); break;
            case 2: memcpy(neu, old, flen); break;
            default: rfill(neu, flen);
            }
            memcpy(b + off, neu, flen);
            uint16_t inc;
            if (kind == 0)
                inc = pn_csum_replace2(check, get16(old), get16(neu));
            else if (kind == 1)
                inc = pn_csum_replace4(check, get32(old), get32(neu));
            else
                inc = pn_csum_replace_bytes(check, old, neu, flen);
            uint16_t full = (uint16_t)~ref_sum(b, len);
            if (inc != full) {
                CHECK(full == 0xFFFF && inc == 0x0000 && all_zero(b, len),
                      "RFC 1624 %s: len=%zu field at %zu (%zu bytes): incremental %#06x, full %#06x",
                      kind == 0 ? "replace2" : kind == 1 ? "replace4" : "replace_bytes", len, off, flen, inc, full);
                st_negzero++;
            }
            check = inc;
        }
    }
    free(b);
    st_csum++;
}

/* ---------------------------------------------------------------- SipHash */

static void check_siphash_vector(void)
{
    g_phase = "siphash-vector";
    uint8_t k[16], m[15];
    for (int i = 0; i < 16; i++)
        k[i] = (uint8_t)i;
    for (int i = 0; i < 15; i++)
        m[i] = (uint8_t)i;
    uint64_t want = 0xa129ca6149be45e5ULL; /* Aumasson & Bernstein, SipHash paper, appendix A */
    CHECK(pn_siphash(k, m, 15, 2, 4) == want, "SipHash-2-4 paper vector: %#" PRIx64, pn_siphash(k, m, 15, 2, 4));
    CHECK(ref_siphash(k, m, 15, 2, 4) == want, "harness reference SipHash disagrees with the paper");
}

static void check_siphash_once(void)
{
    g_phase = "siphash";
    uint8_t k[16];
    rfill(k, 16);
    size_t len = rn(70);
    uint8_t *m = exact_alloc(len);
    rfill(m, len);
    int c = pct(50) ? 1 : 1 + (int)rn(4), d = pct(50) ? 3 : 1 + (int)rn(5);
    uint64_t got = pn_siphash(k, m, len, c, d), want = ref_siphash(k, m, len, c, d);
    CHECK(got == want, "SipHash-%d-%d len=%zu: %#" PRIx64 " vs reference %#" PRIx64, c, d, len, got, want);
    free(m);
    st_sip++;
}

/* ---------------------------------------------------------------- fast path */

#define MAXF 48 /* above the core's STAGE (32), so batches cross its groups */

/* Does [lo, hi) of a descriptor (with the 20 bytes of TUN headroom in front) overlap another's? */
static int regions_disjoint(const pn_desc *d, uint32_t n, size_t buflen)
{
    for (uint32_t i = 0; i < n; i++) {
        if ((uint64_t)d[i].off + d[i].len > buflen)
            continue;
        uint64_t lo = d[i].off >= 20 ? d[i].off - 20 : 0, hi = (uint64_t)d[i].off + d[i].len;
        for (uint32_t j = 0; j < n; j++) {
            if (j == i || (uint64_t)d[j].off + d[j].len > buflen)
                continue;
            uint64_t lo2 = d[j].off >= 20 ? d[j].off - 20 : 0, hi2 = (uint64_t)d[j].off + d[j].len;
            if (lo < hi2 && lo2 < hi)
                return 0;
        }
    }
    return 1;
}

static void run_and_check(pn_table *t, uint8_t *buf, size_t buflen, pn_desc *d, uint32_t n, int ifindex, double now);

static void fp_batch(void)
{
    g_phase = "fastpath";
    if (!FP.live || FP.batches > 60 || pct(1))
        fp_new();
    FP.batches++;
    pn_table *t = &FP.t;
    FP.now += pct(50) ? 0.0 : rdbl(0, 5);
    double now = FP.now;
    int ifindex = pct(93) ? used_iface(t) : (int)rn(48) - 8;

    /* Lay the frames out. */
    int layout = (int)rn(100);
    uint32_t n;
    size_t buflen;
    uint8_t *buf;
    pn_desc *d;
    if (layout < 40 || layout >= 75) { /* one frame alone in an exact buffer, or several, 20+ bytes apart */
        n = layout < 40 ? 1 : 1 + (pct(85) ? rn(16) : rn(MAXF));
        frame fr[MAXF];
        uint32_t offs[MAXF];
        size_t cur = pct(20) ? rn(20) : 20 + rn(20);
        for (uint32_t i = 0; i < n; i++) {
            fr[i] = make_frame(t, ifindex);
            offs[i] = (uint32_t)cur;
            cur += fr[i].len + (i + 1 < n ? 20 + rn(8) : 0);
        }
        buflen = cur;
        buf = exact_alloc(buflen);
        rfill(buf, buflen);
        d = (pn_desc *)xmalloc(n * sizeof(pn_desc));
        for (uint32_t i = 0; i < n; i++) {
            memcpy(buf + offs[i], fr[i].data, fr[i].len);
            d[i].off = offs[i];
            d[i].len = (uint32_t)fr[i].len;
            d[i].verdict = (int16_t)rnd64();
            d[i].reason = 0, d[i].gso_size = 0, d[i].gso_type = 0;
            d[i].flags = fr[i].partial ? PN_CSUM_PARTIAL : 0;
            free(fr[i].data);
        }
    } else { /* chaos: random bytes with frames dropped in anywhere, descriptors anywhere (and out of range) */
        buflen = rn(4000);
        buf = exact_alloc(buflen);
        rfill(buf, buflen);
        uint32_t at[4], flen[4], nf = 0;
        for (int i = 0; i < 4; i++) {
            frame fr = make_frame(t, ifindex);
            if (fr.len <= buflen) {
                at[nf] = rn((uint32_t)(buflen - fr.len) + 1);
                flen[nf] = (uint32_t)fr.len;
                memcpy(buf + at[nf], fr.data, fr.len);
                nf++;
            }
            free(fr.data);
        }
        n = pct(85) ? rn(17) : rn(MAXF + 1);
        d = (pn_desc *)xmalloc((n ? n : 1) * sizeof(pn_desc));
        for (uint32_t i = 0; i < n; i++) {
            uint32_t r = rn(10);
            if (r < 5 && nf) {
                uint32_t j = rn(nf);
                d[i].off = at[j], d[i].len = flen[j];
                if (pct(30))
                    d[i].len = (uint32_t)((int64_t)d[i].len + (int64_t)rn(9) - 4);
            } else if (r < 8) {
                d[i].off = rn((uint32_t)buflen + 10);
                d[i].len = rn((uint32_t)buflen + 10);
            } else {
                static const uint32_t ext[] = {0, 1, 13, 14, 33, 34, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFFECu, 0xFFFFFFFFu};
                d[i].off = pct(50) ? ext[rn(10)] : (uint32_t)buflen - rn(3);
                d[i].len = pct(50) ? ext[rn(10)] : (uint32_t)(buflen - (d[i].off <= buflen ? d[i].off : 0));
            }
            d[i].verdict = (int16_t)rnd64();
            d[i].reason = 0, d[i].gso_size = 0, d[i].gso_type = 0;
            d[i].flags = pct(20) ? PN_CSUM_PARTIAL : 0;
        }
    }

    run_and_check(t, buf, buflen, d, n, ifindex, now);
    free(buf);
    free(d);
}

/* Run one pn_process() call and check everything about it: always the structure (verdicts, reasons,
 * counters, forwarded frames inside the buffer); and when no two frames share bytes, the exact outcome of
 * each frame against the reference classifier and rewrite, byte for byte over the whole buffer. */
/* A deep copy of a table (its arrays copied, the scalars and interfaces with the struct). */
static void table_clone(pn_table *dst, const pn_table *src)
{
    CHECK(pn_table_init(dst, src->capacity, src->key, src->ndests) == 0, "clone: pn_table_init");
    pn_entry *e = dst->e;
    uint32_t *b = dst->buckets, *fl = dst->freelist;
    pn_counters *dc = dst->dests;
    CHECK(dst->mask == src->mask, "clone: bucket count differs");
    *dst = *src;
    dst->e = e, dst->buckets = b, dst->freelist = fl, dst->dests = dc;
    memcpy(e, src->e, (size_t)src->capacity * sizeof(pn_entry));
    memcpy(b, src->buckets, ((size_t)src->mask + 1) * sizeof(uint32_t));
    memcpy(fl, src->freelist, (size_t)src->capacity * sizeof(uint32_t));
    memcpy(dc, src->dests, (size_t)src->ndests * sizeof(pn_counters));
}

/* The batch against the same frames one call at a time (what fastpath.c promises its staged passes give,
 * and what the pure twin does): buffer, descriptors, counters and expiries must all agree. */
static void check_sequential(const pn_table *t, const uint8_t *buf, const pn_desc *d, pn_table *t2, uint8_t *buf2,
                             pn_desc *d2, size_t buflen, uint32_t n, int ifindex, double now, int disjoint)
{
    for (uint32_t i = 0; i < n; i++)
        pn_process(t2, buf2, buflen, &d2[i], 1, ifindex, now);
    int same = 1;
    const char *what = "";
    uint32_t where = 0;
    for (uint32_t i = 0; i < n && same; i++)
        if (d[i].off != d2[i].off || d[i].len != d2[i].len || d[i].verdict != d2[i].verdict || d[i].reason != d2[i].reason)
            same = 0, what = "descriptor", where = i;
    for (size_t b = 0; b < buflen && same; b++)
        if (buf[b] != buf2[b])
            same = 0, what = "buffer byte", where = (uint32_t)b;
    for (uint32_t s = 0; s < t->capacity && same; s++)
        if (t->e[s].expires != t2->e[s].expires)
            same = 0, what = "expiry of slot", where = s;
    if (same && (t->forwarded != t2->forwarded || memcmp(t->punts, t2->punts, sizeof(t->punts)) ||
                 memcmp(t->dests, t2->dests, t->ndests * sizeof(pn_counters))))
        same = 0, what = "counters", where = 0;
    if (!same) {
        /* Fixed (staged_ok in fastpath.c): overlapping layouts go one frame at a time, so every batch must
         * agree with one-at-a-time processing, disjoint or not. */
        FAIL("batch of %u vs one at a time differ (%s %u; descriptors %s): the staged passes are not "
             "one-at-a-time processing (KB3: see the top of harness.c)",
             n, what, where, disjoint ? "disjoint" : "overlapping");
    }
}

static void run_and_check(pn_table *t, uint8_t *buf, size_t buflen, pn_desc *d, uint32_t n, int ifindex, double now)
{
    int disjoint = regions_disjoint(d, n, buflen);
    uint8_t *before = exact_alloc(buflen), *exp = exact_alloc(buflen), *skip = exact_alloc(buflen);
    if (buflen) {
        memcpy(before, buf, buflen);
        memcpy(exp, buf, buflen);
        memset(skip, 0, buflen);
    }
    pn_desc *d0 = (pn_desc *)xmalloc((n ? n : 1) * sizeof(pn_desc));
    if (n)
        memcpy(d0, d, n * sizeof(pn_desc));
    refout ref[MAXF];
    uint32_t csum_at[MAXF], noff[MAXF];
    uint32_t cap = t->capacity;
    double *exp_before = (double *)xmalloc(cap * sizeof(double));
    double *exp_after = (double *)xmalloc(cap * sizeof(double));
    for (uint32_t s = 0; s < cap; s++)
        exp_before[s] = exp_after[s] = t->e[s].expires;
    uint32_t nd = t->ndests;
    pn_counters *dc = (pn_counters *)xmalloc(nd * sizeof(pn_counters));
    memcpy(dc, t->dests, nd * sizeof(pn_counters));
    uint64_t fwd0 = t->forwarded, punts0[PN_PUNT_NREASONS];
    memcpy(punts0, t->punts, sizeof(punts0));
    uint32_t want_punts = 0;
    if (disjoint) {
        for (uint32_t i = 0; i < n; i++) {
            int in_range = (uint64_t)d[i].off + d[i].len <= buflen;
            /* A partial checksum is not verified and is finished only when the frame is forwarded (these
             * interfaces take no virtio-net header): classify the finished frame, put it back if punted. */
            int partial = (d[i].flags & PN_CSUM_PARTIAL) && in_range;
            if (partial)
                ref_complete(exp + d[i].off, d[i].len);
            ref[i] = ref_classify(t, exp, buflen, d[i].off, d[i].len, ifindex, now);
            if (ref[i].reason >= 0) {
                if (partial)
                    memcpy(exp + d[i].off, before + d[i].off, d[i].len);
                want_punts++;
                continue;
            }
            noff[i] = ref_forward(t, &ref[i], exp, skip, d[i].off, &csum_at[i]);
            const pn_entry *e = &t->e[ref[i].slot];
            exp_after[ref[i].slot] = now + (e->proto == 6 ? t->tcp_timeout : t->udp_timeout);
            pn_counters *c = &dc[e->dest_id < nd ? e->dest_id : 0];
            if (ref[i].dir == PN_DIR_IN)
                c->pkts_in++, c->bytes_in += ref[i].total;
            else
                c->pkts_out++, c->bytes_out += ref[i].total;
        }
    }

    pn_table t2;
    table_clone(&t2, t);
    uint8_t *buf2 = exact_alloc(buflen);
    if (buflen)
        memcpy(buf2, buf, buflen);
    pn_desc *d2 = (pn_desc *)xmalloc((n ? n : 1) * sizeof(pn_desc));
    if (n)
        memcpy(d2, d, n * sizeof(pn_desc));

    pn_table t3;
    table_clone(&t3, t);
    uint8_t *buf3 = exact_alloc(buflen);
    if (buflen)
        memcpy(buf3, buf, buflen);
    pn_desc *d3 = (pn_desc *)xmalloc((n ? n : 1) * sizeof(pn_desc));
    if (n)
        memcpy(d3, d, n * sizeof(pn_desc));

    uint32_t punts = pn_process(t, buf, buflen, d, n, ifindex, now);

    check_sequential(t, buf, d, &t2, buf2, d2, buflen, n, ifindex, now, disjoint);
    pn_table_free(&t2);
    free(buf2);
    free(d2);

    /* pn_process_until_punt, called until the batch is consumed (as the Director does): each call stops
     * right after its first punt; for a disjoint layout the outcome is the batch's. */
    for (uint32_t i = 0, calls = 0; i < n; calls++) {
        CHECK(calls < n, "until_punt: more calls than frames");
        uint32_t k = pn_process_until_punt(&t3, buf3, buflen, d3 + i, n - i, ifindex, now);
        CHECK(k >= 1 && k <= n - i, "until_punt consumed %u of %u", k, n - i);
        for (uint32_t j = i; j + 1 < i + k; j++)
            CHECK(d3[j].verdict >= 0, "until_punt went past a punt at %u", j);
        CHECK(i + k == n || d3[i + k - 1].verdict < 0, "until_punt stopped at %u without a punt", i + k - 1);
        i += k;
    }
    if (disjoint) {
        CHECK(buflen == 0 || memcmp(buf3, buf, buflen) == 0, "until_punt: buffer differs from the batch");
        for (uint32_t i = 0; i < n; i++)
            CHECK(d3[i].off == d[i].off && d3[i].len == d[i].len && d3[i].verdict == d[i].verdict &&
                      d3[i].reason == d[i].reason,
                  "until_punt: descriptor %u differs from the batch", i);
        CHECK(t3.forwarded == t->forwarded && memcmp(t3.punts, t->punts, sizeof(t->punts)) == 0 &&
                  memcmp(t3.dests, t->dests, t->ndests * sizeof(pn_counters)) == 0,
              "until_punt: counters differ from the batch");
        for (uint32_t s = 0; s < t->capacity; s++)
            CHECK(t3.e[s].expires == t->e[s].expires, "until_punt: expiry of slot %u differs", s);
    }
    pn_table_free(&t3);
    free(buf3);
    free(d3);

    /* Structure, always. */
    uint32_t nfwd = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (d[i].verdict >= 0) {
            nfwd++;
            CHECK(d[i].reason == 0, "desc %u forwarded with reason %u", i, d[i].reason);
            CHECK(d[i].verdict < PN_MAX_IFACES && t->ifaces[d[i].verdict].used, "desc %u egress %d not an interface",
                  i, d[i].verdict);
            CHECK((uint64_t)d[i].off + d[i].len <= buflen, "desc %u forwarded frame [%u, +%u) outside buffer %zu", i,
                  d[i].off, d[i].len, buflen);
            CHECK(d[i].off == d0[i].off || d[i].off + 20 == d0[i].off, "desc %u off moved %u -> %u", i, d0[i].off, d[i].off);
        } else {
            CHECK(d[i].verdict == -1 && d[i].reason < PN_PUNT_NREASONS, "desc %u verdict %d reason %u", i,
                  d[i].verdict, d[i].reason);
            CHECK(d[i].off == d0[i].off && d[i].len == d0[i].len, "desc %u punted but off/len changed", i);
            st_reason[d[i].reason]++;
        }
    }
    CHECK(punts + nfwd == n, "pn_process returned %u punts, descriptors say %u of %u", punts, n - nfwd, n);
    CHECK(t->forwarded == fwd0 + nfwd, "forwarded counter");
    st_forwards += nfwd;
    st_punts += punts;
    st_frames += n;
    st_batches++;

    /* Exact outcome, when no two frames share bytes. */
    if (disjoint) {
        for (uint32_t i = 0; i < n; i++) {
            if (ref[i].reason >= 0) {
                CHECK(d[i].verdict == -1 && d[i].reason == ref[i].reason,
                      "desc %u (off %u len %u ifindex %d): verdict %d reason %u, reference punt reason %d%s", i,
                      d0[i].off, d0[i].len, ifindex, d[i].verdict, d[i].reason, ref[i].reason,
                      ref[i].reason == PN_PUNT_MTU && d[i].verdict >= 0 ? " (KB1: see the top of harness.c)" : "");
                continue;
            }
            CHECK(d[i].verdict == ref[i].egress,
                  "desc %u (off %u len %u ifindex %d): verdict %d reason %u, reference forward to %d (frame total %u)",
                  i, d0[i].off, d0[i].len, ifindex, d[i].verdict, d[i].reason, ref[i].egress, ref[i].total);
            uint32_t wlen = ETH + ref[i].total + (ref[i].encap ? 20 : 0);
            CHECK(d[i].off == noff[i] && d[i].len == wlen, "desc %u: off/len %u/%u, reference %u/%u", i, d[i].off,
                  d[i].len, noff[i], wlen);
            const pn_entry *e = &t->e[ref[i].slot];
            st_fwd_mode[e->mode & 3][ref[i].dir]++;
            if (ref[i].total > 65000)
                st_fwd_big++;
            /* The L4 checksum of the output must verify (UDP: a kept 0 is "none"). */
            uint8_t *ip = buf + d[i].off + ETH + (ref[i].encap ? 20 : 0);
            CHECK(ref_sum(ip, 20) == 0xFFFF, "desc %u: output IPv4 header checksum does not verify", i);
            if (ref[i].encap)
                CHECK(ref_sum(ip - 20, 20) == 0xFFFF, "desc %u: outer IPv4 header checksum does not verify", i);
            if (csum_at[i] != UINT32_MAX) {
                uint32_t l4len = ref[i].total - 20;
                uint32_t s = oc_add(ref_pseudo(ip, l4len), ref_sum(ip + 20, l4len));
                CHECK(s == 0xFFFF, "desc %u: output %s checksum does not verify (field %#06x, mode %u dir %d)", i,
                      ip[9] == 6 ? "TCP" : "UDP", get16(buf + csum_at[i]), e->mode, ref[i].dir);
                CHECK(!(ip[9] == 17 && get16(buf + csum_at[i]) == 0), "desc %u: UDP checksum became 0 (none)", i);
                if (ip[9] == 17 && get16(buf + csum_at[i]) == 0xFFFF && get16(before + csum_at[i]) != 0xFFFF)
                    st_fwd_udp_ffff++;
            } else {
                st_fwd_udp0++;
            }
        }
        CHECK(punts == want_punts, "pn_process: %u punts, reference %u", punts, want_punts);
        for (size_t b = 0; b < buflen; b++)
            if (!skip[b] && buf[b] != exp[b]) {
                uint32_t which = UINT32_MAX;
                for (uint32_t i = 0; i < n; i++)
                    if ((uint64_t)d0[i].off + d0[i].len <= buflen && b + 20 >= d0[i].off && b < (size_t)d0[i].off + d0[i].len)
                        which = i;
                if (which != UINT32_MAX) {
                    size_t lo = d0[which].off >= 20 ? d0[which].off - 20 : 0, hi = (size_t)d0[which].off + 80;
                    if (hi > buflen)
                        hi = buflen;
                    const char *nm[3] = {"before", "after ", "ref   "};
                    const uint8_t *src[3] = {before, buf, exp};
                    for (int k = 0; k < 3; k++) {
                        fprintf(stderr, "%s:", nm[k]);
                        for (size_t x = lo; x < hi; x++)
                            fprintf(stderr, "%s%02x", x == d0[which].off ? " | " : " ", src[k][x]);
                        fputc('\n', stderr);
                    }
                }
                FAIL("byte %zu of %zu is %#04x, reference %#04x (was %#04x; desc %d at %+lld of its frame, reason %d, "
                     "proto %d, mode %d, dir %d, encap %d)",
                     b, buflen, buf[b], exp[b], before[b], (int)which,
                     which == UINT32_MAX ? 0LL : (long long)b - (long long)d0[which].off,
                     which == UINT32_MAX ? -9 : ref[which].reason,
                     which == UINT32_MAX ? -1 : before[d0[which].off + ETH + 9],
                     which == UINT32_MAX ? -1 : t->e[ref[which].slot].mode, which == UINT32_MAX ? -1 : ref[which].dir,
                     which == UINT32_MAX ? -1 : ref[which].encap);
            }
        for (uint32_t s = 0; s < cap; s++)
            CHECK(t->e[s].expires == exp_after[s], "slot %u expires %.17g, reference %.17g (before %.17g)", s,
                  t->e[s].expires, exp_after[s], exp_before[s]);
        CHECK(!memcmp(dc, t->dests, nd * sizeof(pn_counters)), "per-server counters differ from the reference");
        for (int r = 0; r < PN_PUNT_NREASONS; r++) {
            uint64_t w = punts0[r];
            for (uint32_t i = 0; i < n; i++)
                w += ref[i].reason == r;
            CHECK(t->punts[r] == w, "punt counter %d: %" PRIu64 ", reference %" PRIu64, r, t->punts[r], w);
        }
    }
    free(d0);
    free(dc);
    free(before);
    free(exp);
    free(skip);
    free(exp_before);
    free(exp_after);
}

/* Fixed cases at the edges that random frames rarely reach, through the same checks as the random ones. */
static void fp_edges(void)
{
    g_phase = "fastpath-edges";
    pn_table t;
    uint8_t key[16] = {0};
    CHECK(pn_table_init(&t, 4, key, 1) == 0, "edge table");
    const uint8_t mac_in[6] = {2, 0, 0, 0, 0, 1}, mac_out[6] = {2, 0, 0, 0, 0, 2};
    t.ifaces[0].used = 1, memcpy(t.ifaces[0].mac, mac_in, 6), t.ifaces[0].mtu = 1500;
    t.ifaces[1].used = 1, memcpy(t.ifaces[1].mac, mac_out, 6), t.ifaces[1].mtu = 65536, t.ifaces[1].addr = 0x0300000A;
    /* n = 0 with no descriptors at all; an empty buffer; bad ingress indexes. */
    CHECK(pn_process(&t, NULL, 0, NULL, 0, 0, 1.0) == 0, "n = 0");
    pn_desc one = {0, 0, 0, 0, 0, 0, PN_CSUM_PARTIAL};
    CHECK(pn_process(&t, NULL, 0, &one, 1, 0, 1.0) == 1 && one.reason == PN_PUNT_NOT_IPV4, "empty frame");
    one = (pn_desc){1, 0, 0, 0, 0, 0, PN_CSUM_PARTIAL};
    CHECK(pn_process(&t, NULL, 0, &one, 1, 0, 1.0) == 1 && one.reason == PN_PUNT_MALFORMED, "off past an empty buffer");
    int bad_if[] = {-1, -100000, PN_MAX_IFACES, 1000000, 5};
    for (int k = 0; k < 5; k++) {
        one = (pn_desc){0, 0, 0, 0, 0, 0, PN_CSUM_PARTIAL};
        CHECK(pn_process(&t, NULL, 0, &one, 1, bad_if[k], 1.0) == 1 && one.reason == PN_PUNT_IFACE, "ifindex %d",
              bad_if[k]);
    }

    /* KB1: TUN to an egress MTU of 65536 (loopback's) with inner totals around 65535 - 20. */
    tuple5 k = {17, 0x0100000Au, 0x0200000Au, 0x3930, 0x5000};
    int64_t s = pn_insert(&t, 17, k.src, k.sport, k.dst, k.dport, 0, 0, 0x0900000Au, k.dport, PN_TUN, 0, 1e9);
    CHECK(s >= 0, "edge insert");
    t.e[s].flags |= PN_F_FAST;
    t.e[s].out_if = 1;
    const size_t totals[] = {65515, 65516, 65535};
    for (int i = 0; i < 3; i++) {
        for (int mtu = 0; mtu < 2; mtu++) {
            t.ifaces[1].mtu = mtu ? 0xFFFFFFFFu : 65536;
            size_t flen = ETH + totals[i];
            uint8_t *buf = exact_alloc(20 + flen);
            memset(buf, 0, 20);
            uint8_t *f = buf + 20, *ip = f + ETH, *l4 = ip + 20;
            memset(f, 0xA5, flen);
            memcpy(f, mac_in, 6);
            f[12] = 8, f[13] = 0;
            ip[0] = 0x45, ip[1] = 0;
            put16(ip + 2, (uint32_t)totals[i]);
            put16(ip + 6, 0x4000);
            ip[8] = 64, ip[9] = 17;
            memcpy(ip + 12, &k.src, 4), memcpy(ip + 16, &k.dst, 4), memcpy(l4, &k.sport, 2), memcpy(l4 + 2, &k.dport, 2);
            put16(l4 + 4, (uint32_t)totals[i] - 20);
            put16(l4 + 6, 0);
            fix_checksums(f, flen, 0);
            pn_desc *d = (pn_desc *)xmalloc(sizeof(pn_desc));
            *d = (pn_desc){20, (uint32_t)flen, 0, 0, 0, 0, 0};
            run_and_check(&t, buf, 20 + flen, d, 1, 0, 2.0);
            CHECK(d->verdict < 0 || get16(buf + d->off + ETH + 2) == totals[i] + 20,
                  "TUN outer total length %u for inner %zu", get16(buf + d->off + ETH + 2), totals[i]);
            free(d);
            free(buf);
        }
    }

    /* KB2: a partial checksum on frames whose IHL is 0..4 (and, for contrast, 5 and 6). */
    for (int ihl = 0; ihl <= 6; ihl++) {
        for (int proto = 0; proto < 2; proto++) {
            size_t flen = ETH + 60;
            uint8_t *buf = exact_alloc(flen);
            rfill(buf, flen);
            memcpy(buf, mac_in, 6);
            buf[12] = 8, buf[13] = 0;
            buf[14] = (uint8_t)(0x40 | ihl);
            put16(buf + 16, 60);
            put16(buf + 20, 0);
            buf[23] = proto ? 17 : 6;
            fix_checksums(buf, flen, 0);
            pn_desc *d = (pn_desc *)xmalloc(sizeof(pn_desc));
            *d = (pn_desc){0, (uint32_t)flen, 0, 0, 0, 0, PN_CSUM_PARTIAL};
            run_and_check(&t, buf, flen, d, 1, 0, 2.0);
            free(d);
            free(buf);
        }
    }
    pn_table_free(&t);
}

/* pn_complete_l4_checksum on its own, against the reference, in an exact-size buffer. */
static void check_complete_once(void)
{
    g_phase = "complete-checksum";
    tuple5 k = {r_proto(), r_addr(), r_addr(), r_port(), r_port()};
    uint8_t mac[6];
    rfill(mac, 6);
    size_t len;
    uint8_t *f = build_frame(mac, &k, 0, &len);
    if (k.proto == 17 && len >= ETH + 30 && pct(25)) { /* its completed checksum computes to 0 */
        uint32_t total = get16(f + ETH + 2);
        if (total >= 30) {
            put16(f + ETH + 26, 0);
            aim_word(f + ETH + 28, oc_add(ref_pseudo(f + ETH, total - 20), ref_sum(f + ETH + 20, total - 20)));
            put16(f + ETH + 26, 0xFFFF);
        }
    }
    if (pct(70))
        partialize(f, len);
    if (pct(40))
        mutate(f, &len);
    if (len > 14 && pct(10))
        f[14] = (uint8_t)(0x40 | rn(16));
    uint8_t *g = exact_alloc(len), *want = exact_alloc(len);
    if (len) {
        memcpy(g, f, len);
        memcpy(want, f, len);
    }
    int rw = ref_complete(want, len);
    if (rw && len >= 42 && want[23] == 17 && (want[14] & 15) == 5 && get16(want + 40) == 0xFFFF)
        st_complete_ffff++;
    int r = pn_complete_l4_checksum(g, len);
    CHECK(r == rw, "pn_complete_l4_checksum returned %d, reference %d (len %zu, ihl %d)", r, rw, len,
          len > 14 ? (f[14] & 15) : -1);
    for (size_t i = 0; i < len; i++)
        CHECK(g[i] == want[i], "pn_complete_l4_checksum: byte %zu is %#04x, reference %#04x (was %#04x)", i, g[i],
              want[i], f[i]);
    free(f);
    free(g);
    free(want);
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    g_seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
    unsigned long long iters = argc > 2 ? strtoull(argv[2], NULL, 0) : 200000;
    g_rs = g_seed * 0xD1B54A32D192ED03ULL + 0x2545F4914F6CDD1DULL;
    setvbuf(stdout, NULL, _IOLBF, 0);

    check_siphash_vector();
    fp_edges();
    ft_big();
    for (g_iter = 0; g_iter < iters; g_iter++) {
        uint32_t r = rn(100);
        if (r < 20)
            check_csum_once();
        else if (r < 25)
            check_complete_once();
        else if (r < 28)
            check_siphash_once();
        else if (r < 30)
            check_offload_once();
        else if (r < 60)
            ft_op();
        else
            fp_batch();
    }
    g_phase = "end";
    ft_done();
    if (FP.live)
        pn_table_free(&FP.t);

    /* The run must have reached what it claims to test. */
    if (iters >= 50000) {
        for (int r = 0; r < PN_PUNT_NREASONS; r++)
            CHECK(st_reason[r] > 0, "coverage: punt reason %d never seen", r);
        for (int m = 0; m < 4; m++)
            CHECK(st_fwd_mode[m][PN_DIR_IN] > 0 && st_fwd_mode[m][PN_DIR_OUT] > 0,
                  "coverage: no forward in mode %d both ways", m);
        CHECK(st_fwd_udp0 > 0, "coverage: no UDP frame without checksum forwarded");
        CHECK(st_fwd_udp_ffff > 0, "coverage: no forwarded UDP checksum computed to 0 (sent as 0xFFFF)");
        CHECK(st_complete_ffff > 0, "coverage: no completed UDP checksum computed to 0 (sent as 0xFFFF)");
        CHECK(st_negzero > 0, "coverage: the RFC 1624 -0 case never came up");
    }
    printf("harness ok: seed=%llu iterations=%llu forwards=%" PRIu64 " punts=%" PRIu64 " frames=%" PRIu64
           " batches=%" PRIu64 " csum=%" PRIu64 " negzero=%" PRIu64 " siphash=%" PRIu64 " flowtable_ops=%" PRIu64
           " big_forwards=%" PRIu64 "\n",
           g_seed, iters, st_forwards, st_punts, st_frames, st_batches, st_csum, st_negzero, st_sip, st_ftops,
           st_fwd_big);
    fflush(stdout);
    return 0;
}
