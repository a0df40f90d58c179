/* Batched AF_PACKET I/O: many frames per system call (recvmmsg, sendmmsg) straight into and out of the
 * batch buffer the fast path works on, so Python runs once per batch rather than once per frame.
 * Twin: pylvs/_pure/io.py (one recvmsg_into / write per frame, the same acceptance rules and counters). */
#define _GNU_SOURCE 1
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/if_packet.h>
#include "pylvs_native.h"

#define PN_IO_MAX 64

#ifndef TP_STATUS_CSUM_VALID
#define TP_STATUS_CSUM_VALID (1 << 7)
#endif

int pn_rx_afpacket(int fd, uint8_t *buf, size_t buflen, pn_desc *desc, uint32_t max, uint32_t stride,
                   uint32_t headroom, uint32_t room, int vnet, pn_rx_counters *c)
{
    struct mmsghdr msgs[PN_IO_MAX];
    struct iovec iov[2 * PN_IO_MAX];
    struct sockaddr_ll addr[PN_IO_MAX];
    uint8_t hdr[PN_IO_MAX][PN_VNET_HDR_LEN];
    union {
        char buf[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
        struct cmsghdr align;
    } cmsg[PN_IO_MAX];
    if (max > PN_IO_MAX)
        max = PN_IO_MAX;
    if (stride == 0 || headroom + room > stride)
        return -EINVAL;
    if ((size_t)max * stride > buflen)
        max = (uint32_t)(buflen / stride);
    uint32_t per = vnet ? 2 : 1, hl = vnet ? PN_VNET_HDR_LEN : 0;
    memset(msgs, 0, sizeof(msgs[0]) * max);
    for (uint32_t i = 0; i < max; i++) {
        /* With PACKET_VNET_HDR each datagram starts with the virtio-net header: it goes to a small array, the
         * frame itself to its slot. */
        if (vnet) {
            iov[2 * i].iov_base = hdr[i];
            iov[2 * i].iov_len = PN_VNET_HDR_LEN;
        }
        iov[per * i + per - 1].iov_base = buf + (size_t)i * stride + headroom;
        iov[per * i + per - 1].iov_len = room;
        msgs[i].msg_hdr.msg_iov = &iov[per * i];
        msgs[i].msg_hdr.msg_iovlen = per;
        msgs[i].msg_hdr.msg_name = &addr[i];
        msgs[i].msg_hdr.msg_namelen = sizeof(addr[i]);
        msgs[i].msg_hdr.msg_control = cmsg[i].buf;
        msgs[i].msg_hdr.msg_controllen = sizeof(cmsg[i].buf);
    }
    int r = max ? recvmmsg(fd, msgs, max, MSG_DONTWAIT | MSG_TRUNC, NULL) : 0;
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        c->rx_errors++;
        return 0;
    }
    uint32_t n = 0;
    for (int i = 0; i < r; i++) {
        uint32_t got = msgs[i].msg_len;
        if (addr[i].sll_pkttype == PACKET_OUTGOING) {
            c->rx_outgoing_ignored++; /* our own transmissions (kernels without PACKET_IGNORE_OUTGOING) */
            continue;
        }
        if ((msgs[i].msg_hdr.msg_flags & MSG_TRUNC) || got < hl || got - hl > room) {
            c->rx_oversize++; /* a GRO/TSO super-frame without PACKET_VNET_HDR: never forwarded cut short */
            continue;
        }
        uint32_t len = got - hl;
        uint32_t status = 0;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msgs[i].msg_hdr); cm; cm = CMSG_NXTHDR(&msgs[i].msg_hdr, cm)) {
            if (cm->cmsg_level == SOL_PACKET && cm->cmsg_type == PACKET_AUXDATA &&
                cm->cmsg_len >= CMSG_LEN(sizeof(struct tpacket_auxdata))) {
                struct tpacket_auxdata aux;
                memcpy(&aux, CMSG_DATA(cm), sizeof(aux));
                status = aux.tp_status;
            }
        }
        if (status & TP_STATUS_VLAN_VALID) {
            c->rx_vlan_dropped++; /* a VLAN's frame, not this untagged interface's */
            continue;
        }
        pn_desc *d = &desc[n];
        uint8_t *f = buf + (size_t)i * stride + headroom;
        if (vnet) {
            pn_vnet_hdr h;
            h.flags = hdr[i][0];
            h.gso_type = hdr[i][1];
            memcpy(&h.hdr_len, hdr[i] + 2, 2); /* host byte order (legacy virtio, vio_le() on little-endian) */
            memcpy(&h.gso_size, hdr[i] + 4, 2);
            memcpy(&h.csum_start, hdr[i] + 6, 2);
            memcpy(&h.csum_offset, hdr[i] + 8, 2);
            if (pn_vnet_to_desc(&h, f, len, d) < 0) {
                c->rx_gso_bad++; /* a super-frame whose header does not describe it: cannot be cut up right */
                continue;
            }
        } else {
            d->flags = (uint8_t)(((status & TP_STATUS_CSUMNOTREADY) ? PN_CSUM_PARTIAL : 0) |
                                 ((status & TP_STATUS_CSUM_VALID) ? PN_CSUM_VALID : 0));
            d->gso_type = PN_GSO_NONE;
            d->gso_size = 0;
        }
        c->rx_csum_partial += (d->flags & PN_CSUM_PARTIAL) != 0;
        c->rx_gso += d->gso_type != PN_GSO_NONE;
        c->rx_frames++;
        c->rx_bytes += len;
        d->off = (uint32_t)((size_t)i * stride + headroom);
        d->len = len;
        d->verdict = -1;
        d->reason = 0;
        n++;
    }
    return (int)n;
}

static void put_vnet(uint8_t *out, const pn_vnet_hdr *h)
{
    out[0] = h->flags;
    out[1] = h->gso_type;
    memcpy(out + 2, &h->hdr_len, 2);
    memcpy(out + 4, &h->gso_size, 2);
    memcpy(out + 6, &h->csum_start, 2);
    memcpy(out + 8, &h->csum_offset, 2);
}

/* Send n messages of per (1 or 2) iovecs each; a TAP device (not a socket) gets one writev each. */
static uint32_t send_msgs(int fd, struct iovec *iov, uint32_t per, uint32_t n, uint64_t *bytes, uint32_t *errors)
{
    struct mmsghdr msgs[PN_IO_MAX];
    uint32_t sent = 0;
    int not_sock = 0;
    for (uint32_t base = 0; base < n; base += PN_IO_MAX) {
        uint32_t m = n - base < PN_IO_MAX ? n - base : PN_IO_MAX;
        memset(msgs, 0, sizeof(msgs[0]) * m);
        for (uint32_t j = 0; j < m; j++) {
            msgs[j].msg_hdr.msg_iov = &iov[(size_t)(base + j) * per];
            msgs[j].msg_hdr.msg_iovlen = per;
        }
        uint32_t done = 0;
        while (done < m) {
            int r = not_sock ? -1 : sendmmsg(fd, msgs + done, m - done, MSG_DONTWAIT);
            if (not_sock || (r < 0 && errno == ENOTSOCK)) {
                not_sock = 1; /* not a socket (a TAP device): writev each frame from now on */
                ssize_t w = writev(fd, msgs[done].msg_hdr.msg_iov, (int)per);
                r = w < 0 ? -1 : 1;
            }
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                (*errors)++;
                done++;
                continue;
            }
            for (int k = 0; k < r; k++)
                *bytes += iov[(size_t)(base + done + (uint32_t)k) * per + per - 1].iov_len;
            done += (uint32_t)r;
            sent += (uint32_t)r;
        }
    }
    return sent;
}

uint32_t pn_tx_run(const int *fds, const uint8_t *vnet, uint32_t nfds, const uint8_t *buf, size_t buflen,
                   const pn_desc *desc, uint32_t start, uint32_t n, pn_tx_counters *c)
{
    struct iovec iov[2 * PN_IO_MAX];
    uint8_t hdr[PN_IO_MAX][PN_VNET_HDR_LEN];
    uint32_t i = start;
    while (i < n && desc[i].verdict >= 0) {
        /* A run of frames to one egress, in arrival order. */
        int16_t eg = desc[i].verdict;
        int v = (uint32_t)eg < nfds && vnet[eg];
        uint32_t per = v ? 2 : 1, m = 0, gso = 0;
        while (i + m < n && m < PN_IO_MAX && desc[i + m].verdict == eg) {
            const pn_desc *d = &desc[i + m];
            int ok = (size_t)d->off <= buflen && (size_t)d->len <= buflen - d->off;
            const uint8_t *f = buf + (ok ? d->off : 0);
            size_t len = ok ? d->len : 0;
            if (v) {
                pn_vnet_hdr h;
                pn_desc_to_vnet(d, f, len, &h);
                put_vnet(hdr[m], &h);
                gso += h.gso_type != PN_GSO_NONE;
                iov[2 * m].iov_base = hdr[m];
                iov[2 * m].iov_len = PN_VNET_HDR_LEN;
            }
            iov[per * m + per - 1].iov_base = (void *)f;
            iov[per * m + per - 1].iov_len = len;
            m++;
        }
        if ((uint32_t)eg >= nfds || fds[eg] < 0) {
            c[(uint32_t)eg < nfds ? eg : 0].tx_errors += m; /* no port for that interface */
        } else {
            uint64_t bytes = 0;
            uint32_t errors = 0;
            c[eg].tx_frames += send_msgs(fds[eg], iov, per, m, &bytes, &errors);
            c[eg].tx_bytes += bytes;
            c[eg].tx_errors += errors;
            c[eg].tx_gso += errors ? 0 : gso; /* super-frames handed to the kernel whole */
        }
        i += m;
    }
    return i;
}

uint32_t pn_send_frames(int fd, const struct iovec *frames, uint32_t n, int vnet, uint64_t *bytes,
                        uint32_t *errors)
{
    static const uint8_t zero[PN_VNET_HDR_LEN]; /* a whole checksum, no GSO */
    struct iovec iov[2 * PN_IO_MAX];
    uint32_t sent = 0, per = vnet ? 2 : 1;
    *bytes = 0;
    *errors = 0;
    for (uint32_t base = 0; base < n; base += PN_IO_MAX) {
        uint32_t m = n - base < PN_IO_MAX ? n - base : PN_IO_MAX;
        for (uint32_t j = 0; j < m; j++) {
            if (vnet) {
                iov[2 * j].iov_base = (void *)zero;
                iov[2 * j].iov_len = PN_VNET_HDR_LEN;
            }
            iov[per * j + per - 1] = frames[base + j];
        }
        sent += send_msgs(fd, iov, per, m, bytes, errors);
    }
    return sent;
}

int pn_rx_tap(int fd, uint8_t *buf, size_t buflen, pn_desc *desc, uint32_t max, uint32_t stride, uint32_t headroom,
              uint32_t room, int vnet, pn_rx_counters *c)
{
    if (max > PN_IO_MAX)
        max = PN_IO_MAX;
    if (stride == 0 || headroom + room > stride)
        return -EINVAL;
    if ((size_t)max * stride > buflen)
        max = (uint32_t)(buflen / stride);
    uint32_t hl = vnet ? PN_VNET_HDR_LEN : 0, n = 0;
    uint8_t hdr[PN_VNET_HDR_LEN];
    /* One read() is one frame on a TAP device (no recvmmsg): the loop is here, in C, so Python still runs
     * once per batch.  Each frame goes to the next free slot; one refused leaves its slot for the next. */
    for (uint32_t k = 0; k < max && n < max; k++) {
        uint8_t *f = buf + (size_t)n * stride + headroom;
        struct iovec iov[2] = {{hdr, PN_VNET_HDR_LEN}, {f, room}};
        ssize_t r = readv(fd, vnet ? iov : iov + 1, vnet ? 2 : 1);
        if (r < 0) {
            if (errno == EINTR) {
                k--;
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                c->rx_errors++;
            break;
        }
        uint32_t got = (uint32_t)r;
        if (got < hl || got - hl >= room) {
            /* Filled the whole slot: the frame may have been longer and cut (tun_put_user copies what fits). */
            c->rx_oversize++;
            continue;
        }
        uint32_t len = got - hl;
        pn_desc *d = &desc[n];
        if (vnet) {
            pn_vnet_hdr h = {.flags = hdr[0], .gso_type = hdr[1]};
            memcpy(&h.hdr_len, hdr + 2, 2);
            memcpy(&h.gso_size, hdr + 4, 2);
            memcpy(&h.csum_start, hdr + 6, 2);
            memcpy(&h.csum_offset, hdr + 8, 2);
            if (pn_vnet_to_desc(&h, f, len, d) < 0) {
                c->rx_gso_bad++;
                continue;
            }
        } else {
            d->flags = 0; /* without IFF_VNET_HDR the kernel finishes checksums before handing frames over */
            d->gso_type = PN_GSO_NONE;
            d->gso_size = 0;
        }
        c->rx_csum_partial += (d->flags & PN_CSUM_PARTIAL) != 0;
        c->rx_gso += d->gso_type != PN_GSO_NONE;
        c->rx_frames++;
        c->rx_bytes += len;
        d->off = (uint32_t)((size_t)n * stride + headroom);
        d->len = len;
        d->verdict = -1;
        d->reason = 0;
        n++;
    }
    return (int)n;
}
