/*
 * net.h: a small IPv4 network stack for tender guests.
 *
 * One struct net drives one network device (declared with
 * TENDER_NET_DEVICE). It speaks Ethernet II, ARP, IPv4, ICMP echo and UDP:
 *
 * - ARP: answers requests for our address, keeps a cache of NET_ARP_ENTRIES
 *   entries that expire NET_ARP_TTL_NS after their last confirmation,
 *   resolves next hops by broadcasting requests, and announces our address
 *   with a gratuitous ARP at start.
 * - IPv4: header checksums checked and filled, TTL 64. Fragments and
 *   packets with IP options are dropped; nothing is fragmented, so a packet
 *   is at most the device MTU. Destinations are on-link (inside ip=/PREFIX)
 *   or reached through gw=.
 * - ICMP: echo requests to our address are answered; a unicast UDP datagram
 *   to a port nobody listens on gets a port unreachable.
 * - UDP: checksums checked (0 = none) and always filled; datagrams go to the
 *   handler registered for their destination port.
 *
 * Everything is in the struct (no allocation); declare it static, it holds
 * two frame buffers. Nothing here prints.
 *
 * All IPv4 addresses are uint32_t in host byte order: 198.51.100.1 is
 * NET_IP4(192, 0, 2, 1) == 0xc0000201. Ports are host byte order too.
 *
 * Every length read from a frame is checked against the frame's length, so a
 * malformed or hostile frame is dropped (and counted) but never read or
 * written out of bounds.
 */
#ifndef TENDER_NET_H
#define TENDER_NET_H

#include "tender.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Limits. */
#define NET_MTU_MAX 9000     /* larger device MTUs are used as this */
#define NET_MTU_MIN 68       /* smaller device MTUs are refused (RFC 791) */
#define NET_ETH_HLEN 14
#define NET_FRAME_MAX (NET_ETH_HLEN + NET_MTU_MAX)
#define NET_IP_HLEN 20       /* we send no options and accept none */
#define NET_UDP_HLEN 8
#define NET_ARP_ENTRIES 16
#define NET_ARP_TTL_NS (120ULL * 1000000000ULL)    /* entry lifetime */
#define NET_ARP_TRIES 3                             /* requests per resolve */
#define NET_ARP_RETRY_NS (300ULL * 1000000ULL)      /* wait after each */
#define NET_ARP_FAILED_NS (3ULL * 1000000000ULL)   /* negative-cache time */
#define NET_UDP_BINDINGS 8
#define NET_POLL_BATCH 64    /* frames handled per net_poll at most */

/* NET_IP4 builds an address from its four dotted-decimal parts. */
#define NET_IP4(a, b, c, d)                                                   \
	((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 |     \
	 (uint32_t)(d))
#define NET_IP_BROADCAST 0xffffffffu

/* Errors: the functions below return 0 (or a count) on success and one of
 * these, all negative, on failure. */
enum {
	NET_ERR_INVALID = -1,     /* bad argument */
	NET_ERR_DEVICE = -2,      /* device not declared, not attached or unusable */
	NET_ERR_CONFIG = -3,      /* bad or missing command-line setting */
	NET_ERR_TOO_LARGE = -4,   /* datagram does not fit in one packet */
	NET_ERR_UNREACHABLE = -5, /* no route, or ARP got no answer */
	NET_ERR_IO = -6,          /* the host device failed to send */
	NET_ERR_FULL = -7,        /* no free UDP binding */
	NET_ERR_BUSY = -8,        /* the port already has a handler */
};

/* net_strerror describes an error code (a static string). */
const char *net_strerror(int err);

struct net;

/* net_udp_dgram is one received UDP datagram, as given to a handler. data
 * points into the receive buffer and is valid until the handler returns. */
struct net_udp_dgram {
	uint32_t src_ip;
	uint32_t dst_ip;     /* our address, or a broadcast address */
	uint16_t src_port;
	uint16_t dst_port;
	uint8_t src_mac[6];  /* the frame's sender: the peer or its router */
	const uint8_t *data;
	size_t len;
};

/* A UDP handler. It may send (udp_reply, udp_sendto) but must not call
 * net_poll or net_udp_serve. */
typedef void (*net_udp_handler)(struct net *n, const struct net_udp_dgram *d,
				void *arg);

struct net_stats {
	uint64_t rx_frames;    /* frames read from the device */
	uint64_t rx_dropped;   /* frames dropped: malformed, not for us, unsupported */
	uint64_t rx_truncated; /* frames longer than the buffer (dropped) */
	uint64_t tx_frames;    /* frames sent */
	uint64_t tx_errors;    /* frames the device refused */
	uint64_t arp_replies;  /* ARP requests answered */
	uint64_t icmp_echoes;  /* echo requests answered */
	uint64_t udp_received; /* datagrams given to a handler */
	uint64_t udp_unbound;  /* datagrams to a port without a handler */
};

struct net_arp_entry {
	uint32_t ip;
	uint8_t mac[6];
	uint8_t state;       /* NET_ARP_FREE, _VALID or _FAILED */
	uint64_t stamp_ns;   /* monotonic time of the last update */
};

struct net_udp_binding {
	uint16_t port;       /* 0: free */
	net_udp_handler fn;
	void *arg;
};

/* struct net: treat as opaque except for the configuration fields, which
 * may be read after net_init. */
struct net {
	/* Configuration (read-only after net_init). */
	int handle;          /* the device handle */
	uint8_t mac[6];      /* our MAC address */
	uint32_t mtu;        /* largest IP packet: min(device MTU, NET_MTU_MAX) */
	uint32_t ip;         /* our address */
	uint32_t prefix;     /* prefix length, 1..32 */
	uint32_t netmask;
	uint32_t gw;         /* default gateway, 0 for none */

	struct net_stats stats;
	char error[96];      /* why net_init failed, NUL-terminated */

	/* Internal state. */
	uint16_t ip_id;
	bool in_handler;
	struct net_arp_entry arp[NET_ARP_ENTRIES];
	struct net_udp_binding udp[NET_UDP_BINDINGS];
	uint8_t rx[NET_FRAME_MAX];
	uint8_t tx[NET_FRAME_MAX];
	uint8_t arp_rx[128]; /* frames read while resolving (ARP only) */
	uint8_t arp_tx[64];  /* ARP requests and replies */
};

/*
 * net_init sets up n for the device declared as devname and configures it
 * from the command line: argv[1..argc-1] are scanned for
 *
 *	ip=A.B.C.D/PREFIX   our address and prefix length 1..32 (required)
 *	gw=A.B.C.D          default gateway, inside our prefix (optional)
 *
 * Other arguments are left for the program. The MAC address and MTU come
 * from the device (NET_INFO). On success it sends a gratuitous ARP and
 * returns 0. On failure it returns NET_ERR_DEVICE or NET_ERR_CONFIG and
 * n->error says why.
 */
int net_init(struct net *n, const char *devname, int argc, char **argv);

/*
 * net_poll handles the frames waiting on the device: answers ARP and ICMP
 * echo, and passes UDP datagrams to their handlers. When none is waiting it
 * first waits for one, at most timeout_ns (0: do not wait). It handles at
 * most NET_POLL_BATCH frames per call and returns how many it read (0 when
 * the timeout passed), or NET_ERR_DEVICE if the device is unusable.
 */
int net_poll(struct net *n, uint64_t timeout_ns);

/* net_udp_listen registers fn (with arg) for datagrams to port (1..65535);
 * fn NULL removes the port's handler. */
int net_udp_listen(struct net *n, uint16_t port, net_udp_handler fn,
		   void *arg);

/*
 * udp_sendto sends one datagram from our address and sport to dst_ip:dport
 * (a unicast address, 255.255.255.255 or our subnet's broadcast address).
 * The next hop is resolved with ARP if it is not in the cache: up to
 * NET_ARP_TRIES requests, NET_ARP_RETRY_NS apart; frames other than ARP that
 * arrive meanwhile are dropped. A next hop that did not answer is reported
 * unreachable at once for NET_ARP_FAILED_NS. len is at most
 * n->mtu - 28. Returns 0 or a NET_ERR_*.
 */
int udp_sendto(struct net *n, uint32_t dst_ip, uint16_t sport, uint16_t dport,
	       const void *data, size_t len);

/* udp_reply sends data back to the sender of d, from the port d was sent to,
 * addressed to the MAC address d came from (no ARP lookup). */
int udp_reply(struct net *n, const struct net_udp_dgram *d, const void *data,
	      size_t len);

/*
 * net_udp_serve serves a function over UDP on port, forever: each datagram
 * becomes a struct tender_fn_request (id counting from 1, body and len the
 * payload, deadline_ns 0) for handler, exactly as tender_fn_serve would pass
 * it, and the reply body goes back to the sender in one datagram. The reply
 * starts out as status 0, len 0, body = a buffer of cap = n->mtu - 28 bytes
 * (the largest datagram payload). The status is not transmitted; a reply
 * longer than cap is not sent (and counted in stats.tx_errors). Returns only
 * if the device fails (NET_ERR_DEVICE) or the port is taken.
 */
int net_udp_serve(struct net *n, uint16_t port, tender_fn_handler handler);

/* net_resolve finds the MAC address of the next hop towards ip (as
 * udp_sendto does). */
int net_resolve(struct net *n, uint32_t ip, uint8_t mac[6]);

/* net_parse_ip parses dotted-decimal A.B.C.D (each part 0..255, no leading
 * zeros) up to the end of s or the first character in stop (which may be
 * ""). Returns 0 and sets *ip, or NET_ERR_INVALID. */
int net_parse_ip(const char *s, const char *stop, uint32_t *ip);

/* net_format_config writes "mac 02:00:00:00:00:01 ip 198.51.100.2/24
 * gw 198.51.100.1 mtu 1500" (no gw part without a gateway) into buf, like
 * snprintf. */
int net_format_config(const struct net *n, char *buf, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* TENDER_NET_H */
