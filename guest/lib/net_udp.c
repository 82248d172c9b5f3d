/*
 * net_udp.c: UDP (RFC 768), and functions served over UDP.
 */
#include "net_impl.h"

/* udp_csum_start sums the pseudo-header: addresses, protocol, length. */
static uint64_t udp_csum_start(uint32_t src, uint32_t dst, size_t udp_len)
{
	uint8_t pseudo[12];

	put32(pseudo, src);
	put32(pseudo + 4, dst);
	pseudo[8] = 0;
	pseudo[9] = IP_PROTO_UDP;
	put16(pseudo + 10, (uint16_t)udp_len);
	return net_csum_add(0, pseudo, sizeof(pseudo));
}

void net_udp_input(struct net *n, const uint8_t *frame, const uint8_t *ip,
		   size_t ip_len)
{
	const uint8_t *udp = ip + NET_IP_HLEN;
	size_t avail = ip_len - NET_IP_HLEN;

	if (avail < NET_UDP_HLEN) {
		n->stats.rx_dropped++;
		return;
	}
	size_t len = get16(udp + UDP_LEN);
	uint32_t src = get32(ip + IP_SRC), dst = get32(ip + IP_DST);
	uint16_t dport = get16(udp + UDP_DPORT);
	/* Bytes after the UDP length and inside the IP length are ignored. */
	if (len < NET_UDP_HLEN || len > avail || dport == 0 ||
	    (get16(udp + UDP_CSUM) != 0 && /* 0: sent without a checksum */
	     net_csum_fold(udp_csum_start(src, dst, len) +
			   net_csum_add(0, udp, len)) != 0)) {
		n->stats.rx_dropped++;
		return;
	}

	struct net_udp_binding *b = NULL;
	for (int i = 0; i < NET_UDP_BINDINGS; i++) {
		if (n->udp[i].port == dport) {
			b = &n->udp[i];
			break;
		}
	}
	if (b == NULL) {
		n->stats.udp_unbound++;
		if (dst == n->ip && !mac_is_broadcast(frame + ETH_DST))
			net_icmp_unreachable(n, frame, ip, ip_len,
					     ICMP_UNREACH_PORT);
		return;
	}

	struct net_udp_dgram d = {
		.src_ip = src,
		.dst_ip = dst,
		.src_port = get16(udp + UDP_SPORT),
		.dst_port = dport,
		.data = udp + NET_UDP_HLEN,
		.len = len - NET_UDP_HLEN,
	};
	memcpy(d.src_mac, frame + ETH_SRC, 6);
	n->stats.udp_received++;
	n->in_handler = true;
	b->fn(n, &d, b->arg);
	n->in_handler = false;
}

int net_udp_listen(struct net *n, uint16_t port, net_udp_handler fn,
		   void *arg)
{
	if (n == NULL || port == 0)
		return NET_ERR_INVALID;

	struct net_udp_binding *slot = NULL;
	for (int i = 0; i < NET_UDP_BINDINGS; i++) {
		struct net_udp_binding *b = &n->udp[i];
		if (b->port == port) {
			if (fn != NULL)
				return NET_ERR_BUSY;
			*b = (struct net_udp_binding){0};
			return 0;
		}
		if (b->port == 0 && slot == NULL)
			slot = b;
	}
	if (fn == NULL)
		return 0;
	if (slot == NULL)
		return NET_ERR_FULL;
	*slot = (struct net_udp_binding){.port = port, .fn = fn, .arg = arg};
	return 0;
}

/* udp_build puts the datagram (header and data) in n->tx, addressed from
 * our address to dst. data may already be in place at TX_UDP_DATA. */
static int udp_build(struct net *n, uint32_t dst, uint16_t sport,
		     uint16_t dport, const void *data, size_t len)
{
	if (data == NULL && len > 0)
		return NET_ERR_INVALID;
	if (len > (size_t)n->mtu - NET_IP_HLEN - NET_UDP_HLEN)
		return NET_ERR_TOO_LARGE;

	uint8_t *udp = n->tx + TX_L4;
	size_t udp_len = NET_UDP_HLEN + len;
	if (len > 0 && data != udp + NET_UDP_HLEN)
		memmove(udp + NET_UDP_HLEN, data, len);
	put16(udp + UDP_SPORT, sport);
	put16(udp + UDP_DPORT, dport);
	put16(udp + UDP_LEN, (uint16_t)udp_len);
	put16(udp + UDP_CSUM, 0);
	uint16_t csum = net_csum_fold(udp_csum_start(n->ip, dst, udp_len) +
				      net_csum_add(0, udp, udp_len));
	/* A computed 0 is sent as all ones: 0 means "no checksum". */
	put16(udp + UDP_CSUM, csum != 0 ? csum : 0xffff);
	return 0;
}

int udp_sendto(struct net *n, uint32_t dst_ip, uint16_t sport, uint16_t dport,
	       const void *data, size_t len)
{
	if (n == NULL || sport == 0 || dport == 0)
		return NET_ERR_INVALID;
	/* Copy the data first: resolving reads frames, though only into
	 * n->arp_rx, so data may point into the receive buffer. */
	int err = udp_build(n, dst_ip, sport, dport, data, len);
	if (err != 0)
		return err;

	uint8_t mac[6];
	err = net_resolve(n, dst_ip, mac);
	if (err != 0)
		return err;
	return net_ip_output(n, mac, dst_ip, IP_PROTO_UDP, NET_UDP_HLEN + len);
}

int udp_reply(struct net *n, const struct net_udp_dgram *d, const void *data,
	      size_t len)
{
	if (n == NULL || d == NULL || d->src_port == 0 ||
	    !net_ip_usable_src(n, d->src_ip) || mac_is_multicast(d->src_mac) ||
	    mac_is_zero(d->src_mac))
		return NET_ERR_INVALID;

	/* The handler may have changed nothing, but copy the addresses out of
	 * d before building over memory d might point into. */
	uint8_t mac[6];
	uint32_t dst = d->src_ip;
	uint16_t sport = d->dst_port, dport = d->src_port;
	memcpy(mac, d->src_mac, 6);

	int err = udp_build(n, dst, sport, dport, data, len);
	if (err != 0)
		return err;
	return net_ip_output(n, mac, dst, IP_PROTO_UDP, NET_UDP_HLEN + len);
}

/* The state of net_udp_serve, passed to its UDP handler. */
struct fn_serve {
	tender_fn_handler handler;
	uint64_t next_id;
};

static void fn_serve_dgram(struct net *n, const struct net_udp_dgram *d,
			   void *arg)
{
	struct fn_serve *s = arg;
	size_t cap = (size_t)n->mtu - NET_IP_HLEN - NET_UDP_HLEN;
	struct tender_fn_request req = {
		.id = s->next_id++,
		.body = d->data,
		.len = d->len,
		.deadline_ns = 0,
	};
	/* The reply buffer is where the reply's data goes in the transmit
	 * buffer, so a reply written into it is sent without a copy. */
	struct tender_fn_reply rep = {
		.status = 0,
		.body = n->tx + TX_UDP_DATA,
		.len = 0,
		.cap = cap,
	};

	s->handler(&req, &rep);
	if (rep.len > cap || (rep.body == NULL && rep.len > 0)) {
		n->stats.tx_errors++;
		return;
	}
	(void)udp_reply(n, d, rep.body, rep.len);
}

int net_udp_serve(struct net *n, uint16_t port, tender_fn_handler handler)
{
	struct fn_serve s = {.handler = handler, .next_id = 1};

	if (handler == NULL)
		return NET_ERR_INVALID;
	int err = net_udp_listen(n, port, fn_serve_dgram, &s);
	if (err != 0)
		return err;
	for (;;) {
		err = net_poll(n, TENDER_POLL_MAX);
		if (err < 0) {
			(void)net_udp_listen(n, port, NULL, NULL);
			return err;
		}
	}
}
