/*
 * net_impl.h: what the net*.c files share and programs do not see.
 *
 * Frames are read and built byte by byte through the get/put helpers below
 * (network byte order, no alignment assumptions, no structure overlays), so
 * a field is only ever touched after the length it lies in was checked.
 */
#ifndef TENDER_NET_IMPL_H
#define TENDER_NET_IMPL_H

#include "net.h"

/* Ethernet II. */
#define ETH_DST 0
#define ETH_SRC 6
#define ETH_TYPE 12
#define ETH_MIN_FRAME 60 /* without FCS; shorter frames are padded */
#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_ARP 0x0806

/* ARP for IPv4 over Ethernet, after the Ethernet header. */
#define ARP_HTYPE 0
#define ARP_PTYPE 2
#define ARP_HLEN 4
#define ARP_PLEN 5
#define ARP_OP 6
#define ARP_SHA 8
#define ARP_SPA 14
#define ARP_THA 18
#define ARP_TPA 24
#define ARP_LEN 28
#define ARP_OP_REQUEST 1
#define ARP_OP_REPLY 2

/* IPv4, after the Ethernet header. */
#define IP_VHL 0
#define IP_TOTLEN 2
#define IP_ID 4
#define IP_FRAG 6
#define IP_TTL 8
#define IP_PROTO 9
#define IP_CSUM 10
#define IP_SRC 12
#define IP_DST 16
#define IP_FLAG_MF 0x2000
#define IP_FRAG_OFFSET 0x1fff
#define IP_DEFAULT_TTL 64
#define IP_PROTO_ICMP 1
#define IP_PROTO_UDP 17

/* ICMP. */
#define ICMP_TYPE 0
#define ICMP_CODE 1
#define ICMP_CSUM 2
#define ICMP_HLEN 8
#define ICMP_ECHO_REPLY 0
#define ICMP_UNREACH 3
#define ICMP_UNREACH_PROTO 2
#define ICMP_UNREACH_PORT 3
#define ICMP_ECHO_REQUEST 8

/* UDP. */
#define UDP_SPORT 0
#define UDP_DPORT 2
#define UDP_LEN 4
#define UDP_CSUM 6

/* Where a packet's parts start in the transmit buffer. */
#define TX_IP NET_ETH_HLEN
#define TX_L4 (NET_ETH_HLEN + NET_IP_HLEN)
#define TX_UDP_DATA (TX_L4 + NET_UDP_HLEN)

/* ARP cache entry states. */
enum { NET_ARP_FREE = 0, NET_ARP_VALID = 1, NET_ARP_FAILED = 2 };

static inline uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline bool mac_is_multicast(const uint8_t *mac)
{
	return (mac[0] & 1) != 0; /* includes broadcast */
}

static inline bool mac_is_broadcast(const uint8_t *mac)
{
	return (mac[0] & mac[1] & mac[2] & mac[3] & mac[4] & mac[5]) == 0xff;
}

static inline bool mac_is_zero(const uint8_t *mac)
{
	return (mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]) == 0;
}

/* net_csum_add adds len bytes at p to a one's-complement sum of 16-bit
 * big-endian words; an odd last byte is padded with zero. Only the last
 * piece of a checksummed range may have an odd length. */
uint64_t net_csum_add(uint64_t sum, const uint8_t *p, size_t len);

/* net_csum_fold folds sum to 16 bits and complements it: the value to store
 * in a checksum field, or 0 when checking a range that includes a correct
 * checksum. */
uint16_t net_csum_fold(uint64_t sum);

/* net_ip_usable_src reports whether ip may be the source of a packet we
 * accept and answer: not 0, loopback, multicast, reserved, limited
 * broadcast, our own address or our subnet's broadcast address. */
bool net_ip_usable_src(const struct net *n, uint32_t ip);

/* net_ip_is_broadcast reports whether ip is 255.255.255.255 or our subnet's
 * broadcast address (prefixes up to /30). */
bool net_ip_is_broadcast(const struct net *n, uint32_t ip);

/* net_send_frame pads the len-byte frame at frame to the Ethernet minimum
 * (frame must have room for ETH_MIN_FRAME bytes) and sends it. */
int net_send_frame(struct net *n, uint8_t *frame, size_t len);

/* net_eth_header fills the Ethernet header at frame. */
void net_eth_header(const struct net *n, uint8_t *frame, const uint8_t *dst,
		    uint16_t type);

/* net_ip_output completes the IPv4 packet in n->tx whose payload (l4_len
 * bytes at TX_L4) is in place: IP header to dst_ip, Ethernet header to
 * dst_mac, and sends it. */
int net_ip_output(struct net *n, const uint8_t *dst_mac, uint32_t dst_ip,
		  uint8_t proto, size_t l4_len);

/* Input, one layer each. frame/len is a whole frame already checked to hold
 * an Ethernet header addressed to us (net_udp_input: ip/ip_len is an IPv4
 * packet inside it that net_ip_input checked). ARP replies are built in
 * n->arp_tx, everything else in n->tx. */
void net_arp_input(struct net *n, const uint8_t *frame, size_t len);
void net_ip_input(struct net *n, const uint8_t *frame, size_t len);
void net_udp_input(struct net *n, const uint8_t *frame, const uint8_t *ip,
		   size_t ip_len);

/* net_icmp_unreachable answers the ip_len-byte packet at ip (inside frame,
 * checked by net_ip_input) with a destination unreachable of the given
 * code. */
void net_icmp_unreachable(struct net *n, const uint8_t *frame,
			  const uint8_t *ip, size_t ip_len, uint8_t code);

/* net_arp_announce broadcasts a gratuitous ARP for our address. */
int net_arp_announce(struct net *n);

/* net_frame_for_us checks the Ethernet header of a received frame: long
 * enough, addressed to our MAC or broadcast, from a unicast sender. */
bool net_frame_for_us(const struct net *n, const uint8_t *frame, size_t len);

#endif /* TENDER_NET_IMPL_H */
