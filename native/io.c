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

int pn_rx_afpacket(int fd, uint8_t *buf, size_t buflen, pn_desc *desc, uint32_t max, uint32_t stride,
                   uint32_t headroom, uint32_t room, pn_rx_counters *c)
{
    struct mmsghdr msgs[PN_IO_MAX];
    struct iovec iov[PN_IO_MAX];
    struct sockaddr_ll addr[PN_IO_MAX];
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
    memset(msgs, 0, sizeof(msgs[0]) * max);
    for (uint32_t i = 0; i < max; i++) {
        iov[i].iov_base = buf + (size_t)i * stride + headroom;
        iov[i].iov_len = room;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
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
        uint32_t len = msgs[i].msg_len;
        if (addr[i].sll_pkttype == PACKET_OUTGOING) {
            c->rx_outgoing_ignored++; /* our own transmissions (kernels without PACKET_IGNORE_OUTGOING) */
            continue;
        }
        if ((msgs[i].msg_hdr.msg_flags & MSG_TRUNC) || len > room) {
            c->rx_oversize++; /* a GRO/TSO super-frame: counted, never forwarded cut short */
            continue;
        }
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
        int partial = (status & TP_STATUS_CSUMNOTREADY) != 0;
        c->csum_completed += (uint64_t)partial;
        c->rx_frames++;
        c->rx_bytes += len;
        desc[n].off = (uint32_t)((size_t)i * stride + headroom);
        desc[n].len = len;
        desc[n].verdict = -1;
        desc[n].reason = partial ? PN_IN_CSUM_PARTIAL : 0;
        n++;
    }
    return (int)n;
}

uint32_t pn_tx_run(const int *fds, uint32_t nfds, const uint8_t *buf, size_t buflen, const pn_desc *desc,
                   uint32_t start, uint32_t n, pn_tx_counters *c)
{
    struct iovec iov[PN_IO_MAX];
    uint32_t i = start;
    while (i < n && desc[i].verdict >= 0) {
        /* A run of frames to one egress, in arrival order. */
        int16_t eg = desc[i].verdict;
        uint32_t m = 0;
        while (i + m < n && m < PN_IO_MAX && desc[i + m].verdict == eg) {
            const pn_desc *d = &desc[i + m];
            int ok = (size_t)d->off <= buflen && (size_t)d->len <= buflen - d->off;
            iov[m].iov_base = (void *)(buf + (ok ? d->off : 0));
            iov[m].iov_len = ok ? d->len : 0;
            m++;
        }
        if ((uint32_t)eg >= nfds || fds[eg] < 0) {
            c[(uint32_t)eg < nfds ? eg : 0].tx_errors += m; /* no port for that interface */
        } else {
            uint64_t bytes;
            uint32_t errors;
            c[eg].tx_frames += pn_send_frames(fds[eg], iov, m, &bytes, &errors);
            c[eg].tx_bytes += bytes;
            c[eg].tx_errors += errors;
        }
        i += m;
    }
    return i;
}

uint32_t pn_send_frames(int fd, const struct iovec *frames, uint32_t n, uint64_t *bytes, uint32_t *errors)
{
    struct mmsghdr msgs[PN_IO_MAX];
    uint32_t sent = 0;
    int not_sock = 0;
    *bytes = 0;
    *errors = 0;
    for (uint32_t base = 0; base < n; base += PN_IO_MAX) {
        uint32_t m = n - base < PN_IO_MAX ? n - base : PN_IO_MAX;
        memset(msgs, 0, sizeof(msgs[0]) * m);
        for (uint32_t j = 0; j < m; j++) {
            msgs[j].msg_hdr.msg_iov = (struct iovec *)&frames[base + j];
            msgs[j].msg_hdr.msg_iovlen = 1;
        }
        uint32_t done = 0;
        while (done < m) {
            int r = not_sock ? -1 : sendmmsg(fd, msgs + done, m - done, MSG_DONTWAIT);
            if (not_sock || (r < 0 && errno == ENOTSOCK)) {
                not_sock = 1; /* not a socket (a TAP device): write() each frame from now on */
                ssize_t w = write(fd, frames[base + done].iov_base, frames[base + done].iov_len);
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
                *bytes += frames[base + done + (uint32_t)k].iov_len;
            done += (uint32_t)r;
            sent += (uint32_t)r;
        }
    }
    return sent;
}
