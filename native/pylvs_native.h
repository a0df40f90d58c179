/* pylvs native core: plain C, no Python.  module.c wraps it; harness.c drives it under sanitizers.
 *
 * Every function here has a pure-Python twin in pylvs/_pure/ with the same behaviour; the Hypothesis
 * differential tests (tests/property/test_native_diff.py) hold the two to byte-for-byte agreement.
 */
#ifndef PYLVS_NATIVE_H
#define PYLVS_NATIVE_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- checksums (RFC 1071, RFC 1624) */

uint64_t pn_csum_partial(const uint8_t *data, size_t len, uint64_t initial); /* unfolded sum */
/* Folded to 16 bits, not complemented. */
static inline uint16_t pn_fold16(uint64_t s)
{
    while (s >> 16)
        s = (s & 0xFFFF) + (s >> 16);
    return (uint16_t)s;
}
uint16_t pn_csum_fold(uint64_t s);                                             /* ~fold */
uint16_t pn_csum_replace2(uint16_t check, uint16_t old, uint16_t new_);
uint16_t pn_csum_replace4(uint16_t check, uint32_t old, uint32_t new_);
/* RFC 1624 eqn. 3 for a changed run of big-endian words (an address, a port): the words are summed as
 * they are, without the general sum's loads and byte swap, which matter only for long runs.  Inline: the fast
 * path calls it with a constant length of 2 or 4 on every rewritten field. */
static inline uint16_t pn_csum_replace_bytes(uint16_t check, const uint8_t *old, const uint8_t *new_, size_t len)
{
    uint64_t o = 0, m = 0;
    size_t i = 0;
    for (; i + 1 < len; i += 2) {
        o += (uint32_t)old[i] << 8 | old[i + 1];
        m += (uint32_t)new_[i] << 8 | new_[i + 1];
    }
    if (i < len) { /* an odd last byte is the high half of a zero-padded word (RFC 1071 §4.1) */
        o += (uint32_t)old[i] << 8;
        m += (uint32_t)new_[i] << 8;
    }
    uint64_t s = (uint16_t)~check + (uint16_t)~pn_fold16(o) + m;
    return (uint16_t)~pn_fold16(s);
}

int pn_complete_l4_checksum(uint8_t *frame, size_t len); /* CHECKSUM_PARTIAL frame -> full L4 checksum */

/* ---------------------------------------------------------------- SipHash (Aumasson & Bernstein) */

uint64_t pn_siphash(const uint8_t key[16], const uint8_t *data, size_t len, int c_rounds, int d_rounds);

/* ---------------------------------------------------------------- flow table */

enum { PN_NAT = 0, PN_DR = 1, PN_TUN = 2, PN_FULLNAT = 3 };
enum { PN_DIR_IN = 0, PN_DIR_OUT = 1 };
/* A hash-chain link names an entry and which of its two keys: (slot << 1 | dir) + 1.  0 is the end of a chain,
 * so zeroed memory is an empty table (the kernel's lazy zero pages: nothing to initialise). */
#define PN_NIL 0u
#define PN_LINK(slot, dir) ((((uint32_t)(slot)) << 1 | (uint32_t)(dir)) + 1u)
#define PN_LSLOT(link) (((link) - 1u) >> 1)
#define PN_LDIR(link) ((int)(((link) - 1u) & 1u))
#define PN_MAX_IFACES 32
#define PN_F_USED 1u
#define PN_F_HAS_OUT 2u
#define PN_F_FAST 4u
#define PN_F_TOA 8u /* FULLNAT: the client's TOA is still due (in the ACK that completes the handshake) */

/* One flow, 64 bytes.  Addresses and ports are kept in network byte order, as they sit in the packet, so
 * the fast path compares and copies them without swapping. */
typedef struct {
    uint32_t caddr, vaddr, laddr, daddr;
    uint16_t cport, vport, lport, dport;
    double expires;
    uint32_t next[2];      /* hash chains: [0] inbound key, [1] outbound key; a link is slot << 1 | dir */
    uint8_t client_mac[6]; /* where replies to the client go (the MAC its frames came from) */
    uint8_t rs_mac[6];     /* the next hop toward the real server */
    uint16_t dest_id;      /* per-server counters */
    uint8_t proto, mode, flags, in_if, out_if, toa_kind;
    uint8_t state;    /* IPVS TCP state (tcpstate.py STATES order), kept here once tcp_track is on */
    uint8_t in_table; /* the table its inbound packets use: 0 INPUT, 2 INPUT_ONLY (IPVS NOOUTPUT: DR, TUN) */
    uint8_t pad[2];
} pn_entry;

typedef struct {
    uint64_t pkts_in, pkts_out, bytes_in, bytes_out;
} pn_counters;

typedef struct {
    uint8_t mac[6];
    uint8_t used;
    uint8_t offload; /* its port takes virtio-net headers: partial checksums and GSO super-frames pass whole */
    uint32_t addr; /* network order: DIP, the TUN outer source */
    uint32_t mtu;
} pn_iface;

enum {
    PN_PUNT_NOT_IPV4 = 0, /* not for our MAC, not IPv4 Ethernet */
    PN_PUNT_MALFORMED,    /* truncated, bad lengths or checksums: the slow path counts the drop */
    PN_PUNT_IP_OPTIONS,
    PN_PUNT_FRAGMENT,
    PN_PUNT_PROTO,        /* not TCP or UDP */
    PN_PUNT_NO_FLOW,
    PN_PUNT_NOT_FAST,     /* flow known, but not handed to the fast path (handshake, closing, ...) */
    PN_PUNT_EXPIRED,
    PN_PUNT_TCP_FLAGS,    /* SYN, FIN, RST or no ACK: a state change is for the slow path */
    PN_PUNT_TTL,
    PN_PUNT_MTU,
    PN_PUNT_TOA,          /* a client-supplied TOA-kind option to strip, or a TOA/MSS edit only the slow path
                           * makes (no room, over the MTU, odd options, a super-frame) */
    PN_PUNT_HEADROOM,     /* TUN needs 20 bytes before the frame */
    PN_PUNT_IFACE,        /* unknown ingress/egress interface index */
    PN_PUNT_GSO,          /* a GSO super-frame the egress cannot take whole (no offload, TUN, odd type) */
    PN_PUNT_NREASONS
};

#define PN_TCP_NSTATES 11
#define PN_TCP_ES 1
#define PN_TCP_SR 3
#define PN_EVENTS_MAX 256
/* An event: a fast flow's books changed here.  slot << 8 | flags | new state (the low 5 bits).  Flags: */
#define PN_EV_OUTPUT_SEEN 0x80u /* an output packet of a NOOUTPUT flow: the full tables from now on */
#define PN_EV_TOA 0x40u         /* FULLNAT: the TOA went into this ACK */
#define PN_EV_MSS 0x20u         /* FULLNAT with TOA: the server's SYN-ACK had its MSS lowered */
#define PN_TOA_LEN 8            /* the IPv4 TOA option: kind, length, port, address */

typedef struct {
    uint32_t capacity;  /* hard limit on flows */
    uint32_t count;
    uint32_t hw;        /* high-water mark: slots [0, hw) have been handed out at least once */
    uint32_t nfree;
    uint32_t mask;      /* buckets - 1 */
    uint32_t cursor;    /* expiry sweep position */
    uint32_t ndests;
    pn_entry *e;
    uint32_t *buckets;
    size_t e_map, b_map; /* bytes mapped for e and buckets (0: allocated with calloc) */
    uint32_t *freelist; /* stack of released slots */
    pn_counters *dests;
    uint8_t key[16];
    double tcp_timeout, udp_timeout;
    pn_iface ifaces[PN_MAX_IFACES];
    uint64_t forwarded;
    uint64_t punts[PN_PUNT_NREASONS];
    /* TCP state changes of fast flows (FIN, RST, the ACKs of a teardown), done here once the slow path has
     * pushed IPVS's tables (tcp_track): the new state goes into the entry, its deadline follows that state's
     * timeout, and an event is written for the slow path to keep its books with (the flow's state,
     * active/inactive counts per server).  A SYN is always the slow path's: scheduling is policy. */
    uint8_t tcp_track;
    uint8_t tcp_next[3][4][PN_TCP_NSTATES]; /* [table: INPUT, OUTPUT, INPUT_ONLY][class: syn fin ack rst][state] */
    double tcp_to[PN_TCP_NSTATES];
    uint32_t nevents;
    uint32_t events[PN_EVENTS_MAX];
} pn_table;

/* pn_desc.flags: what the kernel said about the frame's TCP/UDP checksum (virtio-net header or
 * tpacket_auxdata).  PARTIAL: the field holds only the pseudo-header sum, to be finished from csum_start (the
 * L4 header) to the end by whoever sends it on (CHECKSUM_PARTIAL, VIRTIO_NET_HDR_F_NEEDS_CSUM,
 * TP_STATUS_CSUMNOTREADY).  VALID: the kernel checked it already (CHECKSUM_UNNECESSARY,
 * VIRTIO_NET_HDR_F_DATA_VALID, TP_STATUS_CSUM_VALID); the fast path need not sum the payload again. */
#define PN_CSUM_PARTIAL 1u
#define PN_CSUM_VALID 2u

/* pn_desc.gso_type: the virtio-net GSO types (include/uapi/linux/virtio_net.h). */
#define PN_GSO_NONE 0u
#define PN_GSO_TCPV4 1u
#define PN_GSO_UDP 3u     /* UFO: IP fragmentation of one datagram; never passed through (punted) */
#define PN_GSO_TCPV6 4u
#define PN_GSO_UDP_L4 5u  /* USO: one UDP datagram per segment */
#define PN_GSO_ECN 0x80u

/* Frames may sit anywhere in the buffer (every access is bounds-checked against buflen); laid out in
 * ascending order with at least 20 bytes between them (pylvs.core.batch does), they are processed in staged
 * groups, otherwise one at a time — the same result either way.
 *
 * One frame of a batch: the caller fills off/len, flags and the GSO fields; process() sets verdict (egress
 * interface index >= 0, or -1 = punt to the slow path with reason), and may move off/len (TUN grows the
 * frame 20 bytes to the left, Ethernet padding is trimmed) and clear PN_CSUM_PARTIAL (it finished the
 * checksum for an egress that cannot).  A forwarded frame keeps gso_size/gso_type: the sender hands them to
 * the kernel in a virtio-net header. */
typedef struct {
    uint32_t off;
    uint32_t len;
    int16_t verdict;
    uint16_t reason;
    uint16_t gso_size; /* payload bytes per segment of a GSO super-frame; 0 for an ordinary frame */
    uint8_t gso_type;  /* PN_GSO_* */
    uint8_t flags;     /* PN_CSUM_* */
} pn_desc;

/* struct virtio_net_hdr, as AF_PACKET (PACKET_VNET_HDR) and TAP (IFF_VNET_HDR) put it before each frame: 10
 * bytes, fields in the host's byte order (legacy virtio on a little-endian host; the kernel's vio_le()). */
#define PN_VNET_HDR_LEN 10
#define PN_VNET_F_NEEDS_CSUM 1u
#define PN_VNET_F_DATA_VALID 2u
typedef struct {
    uint8_t flags, gso_type;
    uint16_t hdr_len, gso_size, csum_start, csum_offset;
} pn_vnet_hdr;

/* Fill desc's flags/GSO fields from a received virtio-net header for frame f (len bytes).  A partial
 * checksum somewhere other than the IPv4 TCP/UDP checksum field is finished here (as skb_checksum_help
 * would).  Returns 0, or -1 when the frame cannot be taken (a GSO frame whose header does not fit it). */
int pn_vnet_to_desc(const pn_vnet_hdr *h, uint8_t *f, size_t len, pn_desc *d);
/* The virtio-net header to send frame f (len bytes) with, from its descriptor. */
void pn_desc_to_vnet(const pn_desc *d, const uint8_t *f, size_t len, pn_vnet_hdr *h);
/* Cut a GSO super-frame into wire-sized frames with whole checksums, as the kernel's tcp_gso_segment /
 * __udp_gso_segment would (per segment: IP total length, ID + i, header checksum; TCP sequence + i * gso_size,
 * FIN/PSH on the last only, CWR on the first only; UDP length).  Segments go one after the other into out,
 * their lengths into lens.  Returns the number of segments, or -1 (malformed, unsupported type, no room). */
int pn_gso_segment(const uint8_t *f, size_t len, const pn_desc *d, uint8_t *out, size_t outlen, uint32_t *lens,
                   uint32_t maxsegs);

int pn_table_init(pn_table *t, uint32_t capacity, const uint8_t key[16], uint32_t ndests);
void pn_table_free(pn_table *t);
size_t pn_table_memory(const pn_table *t);
uint64_t pn_key_hash(const pn_table *t, uint8_t proto, uint32_t a, uint16_t ap, uint32_t b, uint16_t bp);
/* >= 0 slot; -1 full; -2 a key is in use; -3 bad argument */
int64_t pn_insert(pn_table *t, uint8_t proto, uint32_t caddr, uint16_t cport, uint32_t vaddr, uint16_t vport,
                  uint32_t laddr, uint16_t lport, uint32_t daddr, uint16_t dport, uint8_t mode, int has_out,
                  double expires);
/* slot << 1 | dir, or -1 */
int64_t pn_lookup(const pn_table *t, uint8_t proto, uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport);
/* Is this entry's inbound (dir 0) or outbound (dir 1) key the tuple (proto, a:ap -> b:bp)? */
static inline int pn_key_matches(const pn_entry *e, int dir, uint8_t proto, uint32_t a, uint16_t ap, uint32_t b,
                                 uint16_t bp)
{
    if (e->proto != proto)
        return 0;
    if (dir == PN_DIR_IN)
        return e->caddr == a && e->cport == ap && e->vaddr == b && e->vport == bp;
    return e->daddr == a && e->dport == ap && e->laddr == b && e->lport == bp;
}

/* The same walk from a chain head already read (the fast path reads heads ahead, see fastpath.c). */
int64_t pn_lookup_from(const pn_table *t, uint32_t link, uint8_t proto, uint32_t src, uint16_t sport,
                       uint32_t dst, uint16_t dport);
int pn_remove(pn_table *t, uint32_t slot);
/* Sweep up to budget slots from the cursor; expired slots are removed and written to out (max budget). */
uint32_t pn_expire(pn_table *t, double now, uint32_t budget, uint32_t *out);
uint32_t pn_process(pn_table *t, uint8_t *buf, size_t buflen, pn_desc *desc, uint32_t n, int ifindex, double now);
/* The same, but it stops right after the first punt: returns how many descriptors it consumed (the last one
 * is the punt, if any). */
uint32_t pn_process_until_punt(pn_table *t, uint8_t *buf, size_t buflen, pn_desc *desc, uint32_t n, int ifindex,
                               double now);

/* ---------------------------------------------------------------- batched AF_PACKET I/O (io.c) */

typedef struct {
    uint64_t rx_frames, rx_bytes, rx_outgoing_ignored, rx_oversize, rx_vlan_dropped, rx_csum_partial, rx_errors,
        rx_gso, rx_gso_bad;
} pn_rx_counters;

typedef struct {
    uint64_t tx_frames, tx_bytes, tx_errors, tx_gso;
} pn_tx_counters;

/* Receive up to max frames with one recvmmsg into slots i * stride + headroom (room bytes each); the ones to
 * forward are described, compacted, in desc[0..n) (flags and GSO fields from the virtio-net header when vnet,
 * else from tpacket_auxdata); our own transmissions, truncated and VLAN frames are counted and left out.
 * Returns n. */
int pn_rx_afpacket(int fd, uint8_t *buf, size_t buflen, pn_desc *desc, uint32_t max, uint32_t stride,
                   uint32_t headroom, uint32_t room, int vnet, pn_rx_counters *c);
/* The same from a TAP device (IFF_VNET_HDR when vnet): one readv() per frame, in a loop in C; frames go to
 * consecutive slots. */
int pn_rx_tap(int fd, uint8_t *buf, size_t buflen, pn_desc *desc, uint32_t max, uint32_t stride, uint32_t headroom,
              uint32_t room, int vnet, pn_rx_counters *c);
/* Send desc[start..] up to the first punted frame (verdict < 0): consecutive frames to one egress go out in
 * one sendmmsg on fds[verdict], each behind a virtio-net header where vnet[verdict] (a TAP device: one
 * write each); per-egress counters in c[0..nfds).  Returns the index it stopped at. */
uint32_t pn_tx_run(const int *fds, const uint8_t *vnet, uint32_t nfds, const uint8_t *buf, size_t buflen,
                   const pn_desc *desc, uint32_t start, uint32_t n, pn_tx_counters *c);
struct iovec;
/* Send n separate frames on fd, sendmmsg in chunks (write() for a TAP device), each behind an all-zero
 * virtio-net header when vnet (a whole checksum, no GSO); returns how many went out, with their bytes and the
 * number that failed (ENOBUFS...: counted, never retried). */
uint32_t pn_send_frames(int fd, const struct iovec *frames, uint32_t n, int vnet, uint64_t *bytes,
                        uint32_t *errors);

#endif
