/* Shared by the harness's sources (see the top of harness.c for what it checks and how), built together with
 * the plain-C core by native/sanitize.sh:
 *   harness.c      the drivers (checksums, SipHash, fast-path batches and edges), the run's state and main;
 *   harness_ref.c  the reference models: checksum, SipHash, the flow table's model, classifier and rewrite;
 *   harness_gen.c  the fast path's random input: tables and frames. */
#ifndef PYLVS_HARNESS_H
#define PYLVS_HARNESS_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pylvs_native.h"

/* ---------------------------------------------------------------- failure reporting (harness.c) */

extern unsigned long long g_seed, g_iter;
extern const char *g_phase;

#define FAIL(...)                                                                                          \
    do {                                                                                                   \
        fflush(stdout);                                                                                    \
        fprintf(stderr, "harness FAIL (seed=%llu iteration=%llu phase=%s) %s:%d: ", g_seed, g_iter,        \
                g_phase, __FILE__, __LINE__);                                                              \
        fprintf(stderr, __VA_ARGS__);                                                                      \
        fputc('\n', stderr);                                                                               \
        fflush(stderr);                                                                                    \
        abort();                                                                                           \
    } while (0)
#define CHECK(cond, ...)                                                                                   \
    do {                                                                                                   \
        if (!(cond))                                                                                       \
            FAIL(__VA_ARGS__);                                                                             \
    } while (0)

void *xmalloc(size_t n);
uint8_t *exact_alloc(size_t n);

/* ---------------------------------------------------------------- known bugs (listed in harness.c) */


/* ---------------------------------------------------------------- PRNG (splitmix64) */

extern uint64_t g_rs;

static inline uint64_t rnd64(void)
{
    uint64_t z = (g_rs += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline uint32_t rn(uint32_t n) { return n ? (uint32_t)(rnd64() % n) : 0; } /* [0, n) */
static inline int pct(unsigned p) { return rn(100) < p; }
static inline double rdbl(double lo, double hi) { return lo + (hi - lo) * (double)(rnd64() >> 11) / 9007199254740992.0; }

static inline void rfill(uint8_t *p, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = rnd64();
        memcpy(p + i, &v, 8);
    }
    if (i < n) {
        uint64_t v = rnd64();
        memcpy(p + i, &v, n - i);
    }
}

static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* ---------------------------------------------------------------- statistics (harness.c) */

extern uint64_t st_csum, st_negzero, st_sip, st_ftops, st_forwards, st_punts, st_batches, st_frames;
extern uint64_t st_reason[PN_PUNT_NREASONS];
extern uint64_t st_fwd_mode[4][2]; /* [mode][dir] */
extern uint64_t st_fwd_udp0, st_fwd_big, st_fwd_udp_ffff, st_complete_ffff;

/* ---------------------------------------------------------------- reference checksum (harness_ref.c) */

uint32_t oc_add(uint32_t a, uint32_t b);
uint32_t ref_sum(const uint8_t *p, size_t n);
int all_zero(const uint8_t *p, size_t n);
uint32_t ref_pseudo(const uint8_t *ip, uint32_t l4len);
int ref_complete(uint8_t *f, size_t len);

/* ---------------------------------------------------------------- reference SipHash-c-d (harness_ref.c) */

uint64_t ref_siphash(const uint8_t k[16], const uint8_t *m, size_t len, int c, int d);

/* ---------------------------------------------------------------- flow table against a model (harness_ref.c) */

uint32_t r_addr(void);
uint16_t r_port(void);
uint8_t r_proto(void);
void ft_op(void);
void ft_big(void);
void ft_done(void);

/* ---------------------------------------------------------------- fast path */

#define ETH 14

typedef struct {
    uint8_t proto;
    uint32_t src, dst;
    uint16_t sport, dport;
} tuple5;

/* The table the random batches run through (harness_gen.c makes it, harness.c drives it). */
typedef struct {
    pn_table t;
    int live;
    uint32_t batches;
    double now;
} fp_state;
extern fp_state FP;

typedef struct {
    uint8_t *data;
    size_t len;
    int partial; /* hand it over with PN_CSUM_PARTIAL */
} frame;

/* The fast path's random input (harness_gen.c). */
int used_iface(const pn_table *t);
void fp_new(void);
void fix_checksums(uint8_t *f, size_t len, int udp_keep_zero);
uint8_t *build_frame(const uint8_t dmac[6], const tuple5 *k, uint8_t toa, size_t *len);
void mutate(uint8_t *f, size_t *len);
void partialize(uint8_t *f, size_t len);
void aim_word(uint8_t *w, uint32_t s);
frame make_frame(const pn_table *t, int ifindex);

/* The offload pieces (harness_offload.c). */
void check_offload_once(void);

/* The reference classifier and rewrite (harness_ref.c). */
typedef struct {
    int reason; /* -1 forward */
    uint32_t slot;
    int dir, egress, encap, routed;
    uint32_t total;
} refout;

refout ref_classify(const pn_table *t, const uint8_t *buf, size_t buflen, uint32_t off, uint32_t len,
                    int ifindex, double now);
uint32_t ref_forward(const pn_table *t, const refout *r, uint8_t *exp, uint8_t *skip, uint32_t off,
                     uint32_t *l4csum_at);

#endif
