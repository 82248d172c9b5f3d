/*
 * net_ip.c: IPv4 (RFC 791) and ICMP (RFC 792).
 *
 * Received packets must have a 20-byte header (no options), a correct
 * header checksum, a total length inside the frame (the rest is Ethernet
 * padding), and be whole (no fragment). They must come from a usable
 * unicast address and be for our address or, UDP only, a broadcast
 * address. Echo requests are answered; unicast UDP to a closed port and
 * unicast packets of other protocols get an ICMP unreachable, unless they
 * came as link-layer broadcasts (RFC 1122, 3.2.2).
 */
#include "net_impl.h"

int net_ip_output(struct net *n, const uint8_t *dst_mac, uint32_t dst_ip,
		  uint8_t proto, size_t l4_len)
{
	if (l4_len > (size_t)n->mtu - NET_IP_HLEN)
		return NET_ERR_TOO_LARGE;

	uint8_t *ip = n->tx + TX_IP;
	ip[IP_VHL] = 0x45; /* version 4, 5 words */
	ip[1] = 0;         /* DSCP/ECN */
	put16(ip + IP_TOTLEN, (uint16_t)(NET_IP_HLEN + l4_len));
	put16(ip + IP_ID, n->ip_id++);
	put16(ip + IP_FRAG, 0);
	ip[IP_TTL] = IP_DEFAULT_TTL;
	ip[IP_PROTO] = proto;
	put16(ip + IP_CSUM, 0);
	put32(ip + IP_SRC, n->ip);
	put32(ip + IP_DST, dst_ip);
	put16(ip + IP_CSUM, net_csum_fold(net_csum_add(0, ip, NET_IP_HLEN)));

	net_eth_header(n, n->tx, dst_mac, ETHERTYPE_IPV4);
	return net_send_frame(n, n->tx, TX_L4 + l4_len);
}

void net_icmp_unreachable(struct net *n, const uint8_t *frame,
			  const uint8_t *ip, size_t ip_len, uint8_t code)
{
	/* The offending header and the first 8 bytes of its payload. */
	size_t quote = NET_IP_HLEN + (ip_len - NET_IP_HLEN < 8
					      ? ip_len - NET_IP_HLEN
					      : 8);
	uint8_t *icmp = n->tx + TX_L4;

	icmp[ICMP_TYPE] = ICMP_UNREACH;
	icmp[ICMP_CODE] = code;
	put16(icmp + ICMP_CSUM, 0);
	put32(icmp + 4, 0); /* unused */
	memcpy(icmp + ICMP_HLEN, ip, quote);
	put16(icmp + ICMP_CSUM,
	      net_csum_fold(net_csum_add(0, icmp, ICMP_HLEN + quote)));
	(void)net_ip_output(n, frame + ETH_SRC, get32(ip + IP_SRC),
			    IP_PROTO_ICMP, ICMP_HLEN + quote);
}

static void icmp_input(struct net *n, const uint8_t *frame, const uint8_t *ip,
		       size_t ip_len)
{
	const uint8_t *icmp = ip + NET_IP_HLEN;
	size_t len = ip_len - NET_IP_HLEN;

	if (len < ICMP_HLEN ||
	    net_csum_fold(net_csum_add(0, icmp, len)) != 0 ||
	    icmp[ICMP_TYPE] != ICMP_ECHO_REQUEST ||
	    len > (size_t)n->mtu - NET_IP_HLEN) {
		/* Short, corrupt, not an echo request (we send no echoes,
		 * so replies and errors have no one to go to), or too long
		 * to answer. */
		n->stats.rx_dropped++;
		return;
	}

	/* The reply is the request with type 0: same code, identifier,
	 * sequence number and data. */
	uint8_t *out = n->tx + TX_L4;
	memcpy(out, icmp, len);
	out[ICMP_TYPE] = ICMP_ECHO_REPLY;
	put16(out + ICMP_CSUM, 0);
	put16(out + ICMP_CSUM, net_csum_fold(net_csum_add(0, out, len)));
	if (net_ip_output(n, frame + ETH_SRC, get32(ip + IP_SRC),
			  IP_PROTO_ICMP, len) == 0)
		n->stats.icmp_echoes++;
}

void net_ip_input(struct net *n, const uint8_t *frame, size_t len)
{
	if (len < NET_ETH_HLEN + NET_IP_HLEN) {
		n->stats.rx_dropped++;
		return;
	}
	const uint8_t *ip = frame + NET_ETH_HLEN;
	size_t avail = len - NET_ETH_HLEN;
	size_t total = get16(ip + IP_TOTLEN);
	uint32_t src = get32(ip + IP_SRC), dst = get32(ip + IP_DST);

	if (ip[IP_VHL] != 0x45 || /* IPv4 without options */
	    total < NET_IP_HLEN || total > avail ||
	    net_csum_fold(net_csum_add(0, ip, NET_IP_HLEN)) != 0 ||
	    (get16(ip + IP_FRAG) & (IP_FLAG_MF | IP_FRAG_OFFSET)) != 0 ||
	    !net_ip_usable_src(n, src)) {
		n->stats.rx_dropped++;
		return;
	}
	bool broadcast = net_ip_is_broadcast(n, dst);
	if (dst != n->ip && !broadcast) {
		n->stats.rx_dropped++;
		return;
	}
	/* ICMP errors only for packets sent to us alone (RFC 1122 3.2.2). */
	bool may_answer_error = !broadcast && !mac_is_broadcast(frame + ETH_DST);

	switch (ip[IP_PROTO]) {
	case IP_PROTO_ICMP:
		if (broadcast) { /* no broadcast pings */
			n->stats.rx_dropped++;
			return;
		}
		icmp_input(n, frame, ip, total);
		break;
	case IP_PROTO_UDP:
		net_udp_input(n, frame, ip, total);
		break;
	default:
		n->stats.rx_dropped++;
		if (may_answer_error)
			net_icmp_unreachable(n, frame, ip, total,
					     ICMP_UNREACH_PROTO);
		break;
	}
}
