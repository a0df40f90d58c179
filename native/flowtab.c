/* The flow table: fixed 64-byte entries in memory allocated once, two hash-chain links per entry (the
 * inbound tuple and, for NAT/FULLNAT, the outbound one, as DPVS keeps two hash nodes per connection), a
 * keyed SipHash-1-3 over the tuple so crafted tuples cannot be steered into one chain (IPVS moved its
 * connection hash to siphash for that), a hard capacity, and an expiry sweep driven by the time the caller
 * passes.  Twin: pylvs/_pure/flowtable.py. */
#define _DEFAULT_SOURCE 1 /* mmap flags, madvise */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "pylvs_native.h"

#define HUGE_PAGE (2u << 20)

/* Zeroed memory for the big arrays.  Large ones are mapped anonymously (zero pages handed out lazily: an
 * unused capacity costs address space only) and, where the kernel allows transparent huge pages on request
 * (THP "madvise" mode), backed by 2 MB pages: at a million flows every lookup touches two random cache
 * lines far apart, and with 4 KB pages each also costs a TLB miss. */
static void *big_zalloc(size_t n, size_t *mapped)
{
    *mapped = 0;
    if (n < HUGE_PAGE)
        return calloc(1, n ? n : 1);
    size_t len = (n + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, len, MADV_HUGEPAGE);
#endif
    *mapped = len;
    return p;
}

static void big_free(void *p, size_t mapped)
{
    if (mapped)
        munmap(p, mapped);
    else
        free(p);
}

int pn_table_init(pn_table *t, uint32_t capacity, const uint8_t key[16], uint32_t ndests)
{
    memset(t, 0, sizeof(*t));
    if (capacity == 0 || capacity > (1u << 30) || ndests == 0 || ndests > 65536)
        return -1;
    uint32_t nb = 16;
    while (nb < 2ull * capacity)
        nb <<= 1;
    t->capacity = capacity;
    t->mask = nb - 1;
    t->ndests = ndests;
    memcpy(t->key, key, 16);
    t->e = big_zalloc((size_t)capacity * sizeof(pn_entry), &t->e_map);
    t->buckets = big_zalloc((size_t)nb * sizeof(uint32_t), &t->b_map); /* all PN_NIL */
    t->freelist = malloc((size_t)capacity * sizeof(uint32_t));
    t->dests = calloc(ndests, sizeof(pn_counters));
    if (!t->e || !t->buckets || !t->freelist || !t->dests) {
        pn_table_free(t);
        memset(t, 0, sizeof(*t));
        return -1;
    }
    t->tcp_timeout = 900.0;
    t->udp_timeout = 300.0;
    return 0;
}

void pn_table_free(pn_table *t)
{
    if (t->e)
        big_free(t->e, t->e_map);
    if (t->buckets)
        big_free(t->buckets, t->b_map);
    free(t->freelist);
    free(t->dests);
    t->e = NULL;
    t->buckets = t->freelist = NULL;
    t->dests = NULL;
}

size_t pn_table_memory(const pn_table *t)
{
    return (size_t)t->capacity * (sizeof(pn_entry) + sizeof(uint32_t)) + ((size_t)t->mask + 1) * sizeof(uint32_t) +
           (size_t)t->ndests * sizeof(pn_counters) + sizeof(*t);
}

/* The hashed message: proto, address a, address b, port a, port b (13 bytes, packet byte order). */
uint64_t pn_key_hash(const pn_table *t, uint8_t proto, uint32_t a, uint16_t ap, uint32_t b, uint16_t bp)
{
    uint8_t m[13];
    m[0] = proto;
    memcpy(m + 1, &a, 4);
    memcpy(m + 5, &b, 4);
    memcpy(m + 9, &ap, 2);
    memcpy(m + 11, &bp, 2);
    return pn_siphash(t->key, m, sizeof(m), 1, 3);
}

int64_t pn_lookup(const pn_table *t, uint8_t proto, uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport)
{
    return pn_lookup_from(t, t->buckets[pn_key_hash(t, proto, src, sport, dst, dport) & t->mask], proto, src,
                          sport, dst, dport);
}

int64_t pn_lookup_from(const pn_table *t, uint32_t link, uint8_t proto, uint32_t src, uint16_t sport,
                       uint32_t dst, uint16_t dport)
{
    while (link != PN_NIL) {
        const pn_entry *e = &t->e[PN_LSLOT(link)];
        int dir = PN_LDIR(link);
        if (pn_key_matches(e, dir, proto, src, sport, dst, dport))
            return (int64_t)(link - 1u);
        link = e->next[dir];
    }
    return -1;
}

static void link_key(pn_table *t, uint32_t slot, int dir, uint64_t h)
{
    uint32_t *head = &t->buckets[h & t->mask];
    t->e[slot].next[dir] = *head;
    *head = PN_LINK(slot, dir);
}

static void unlink_key(pn_table *t, uint32_t slot, int dir, uint64_t h)
{
    uint32_t *p = &t->buckets[h & t->mask];
    uint32_t want = PN_LINK(slot, dir);
    while (*p != PN_NIL) {
        if (*p == want) {
            *p = t->e[slot].next[dir];
            return;
        }
        p = &t->e[PN_LSLOT(*p)].next[PN_LDIR(*p)];
    }
}

int64_t pn_insert(pn_table *t, uint8_t proto, uint32_t caddr, uint16_t cport, uint32_t vaddr, uint16_t vport,
                  uint32_t laddr, uint16_t lport, uint32_t daddr, uint16_t dport, uint8_t mode, int has_out,
                  double expires)
{
    if (mode > PN_FULLNAT)
        return -3;
    if (t->count >= t->capacity)
        return -1;
    if (pn_lookup(t, proto, caddr, cport, vaddr, vport) >= 0)
        return -2;
    if (has_out && pn_lookup(t, proto, daddr, dport, laddr, lport) >= 0)
        return -2;
    uint32_t slot = t->nfree ? t->freelist[--t->nfree] : t->hw++;
    pn_entry *e = &t->e[slot];
    memset(e, 0, sizeof(*e));
    e->caddr = caddr, e->vaddr = vaddr, e->laddr = laddr, e->daddr = daddr;
    e->cport = cport, e->vport = vport, e->lport = lport, e->dport = dport;
    e->proto = proto;
    e->mode = mode;
    e->expires = expires;
    e->flags = PN_F_USED | (has_out ? PN_F_HAS_OUT : 0);
    e->next[0] = e->next[1] = PN_NIL;
    link_key(t, slot, PN_DIR_IN, pn_key_hash(t, proto, caddr, cport, vaddr, vport));
    if (has_out)
        link_key(t, slot, PN_DIR_OUT, pn_key_hash(t, proto, daddr, dport, laddr, lport));
    t->count++;
    return slot;
}

int pn_remove(pn_table *t, uint32_t slot)
{
    if (slot >= t->hw || !(t->e[slot].flags & PN_F_USED))
        return 0;
    pn_entry *e = &t->e[slot];
    unlink_key(t, slot, PN_DIR_IN, pn_key_hash(t, e->proto, e->caddr, e->cport, e->vaddr, e->vport));
    if (e->flags & PN_F_HAS_OUT)
        unlink_key(t, slot, PN_DIR_OUT, pn_key_hash(t, e->proto, e->daddr, e->dport, e->laddr, e->lport));
    e->flags = 0;
    t->freelist[t->nfree++] = slot;
    t->count--;
    return 1;
}

uint32_t pn_expire(pn_table *t, double now, uint32_t budget, uint32_t *out)
{
    uint32_t n = 0;
    uint32_t steps = budget < t->hw ? budget : t->hw;
    for (uint32_t i = 0; i < steps; i++) {
        uint32_t slot = t->cursor;
        t->cursor = slot + 1 >= t->hw ? 0 : slot + 1;
        pn_entry *e = &t->e[slot];
        if ((e->flags & PN_F_USED) && e->expires <= now) {
            pn_remove(t, slot);
            out[n++] = slot;
        }
    }
    return n;
}
