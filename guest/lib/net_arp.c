/*
 * net_arp.c: ARP (RFC 826) for IPv4 over Ethernet.
 *
 * The cache holds NET_ARP_ENTRIES entries. An entry is refreshed by any ARP
 * packet from its address (request or reply, to anyone); a new entry is only
 * made from a packet aimed at our address, so a broadcast storm of
 * unrelated requests cannot flush the cache. Valid entries expire
 * NET_ARP_TTL_NS after their last refresh, failed resolutions after
 * NET_ARP_FAILED_NS. When the cache is full the stalest entry is replaced.
 */
#include "net_impl.h"

static const uint8_t broadcast_mac[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static bool arp_expired(const struct net_arp_entry *e, uint64_t now)
{
	uint64_t age = now - e->stamp_ns;

	switch (e->state) {
	case NET_ARP_VALID:
		return age >= NET_ARP_TTL_NS;
	case NET_ARP_FAILED:
		return age >= NET_ARP_FAILED_NS;
	default:
		return true;
	}
}

static struct net_arp_entry *arp_find(struct net *n, uint32_t ip)
{
	for (int i = 0; i < NET_ARP_ENTRIES; i++) {
		struct net_arp_entry *e = &n->arp[i];
		if (e->state != NET_ARP_FREE && e->ip == ip)
			return e;
	}
	return NULL;
}

/* arp_store records ip -> mac in the entry for ip, else a free or expired
 * one, else the one updated longest ago. */
static void arp_store(struct net *n, uint32_t ip, const uint8_t *mac,
		      uint8_t state, uint64_t now)
{
	struct net_arp_entry *e = arp_find(n, ip);

	for (int i = 0; e == NULL && i < NET_ARP_ENTRIES; i++) {
		if (arp_expired(&n->arp[i], now))
			e = &n->arp[i];
	}
	if (e == NULL) {
		e = &n->arp[0];
		for (int i = 1; i < NET_ARP_ENTRIES; i++) {
			if (now - n->arp[i].stamp_ns > now - e->stamp_ns)
				e = &n->arp[i];
		}
	}
	e->ip = ip;
	if (mac != NULL)
		memcpy(e->mac, mac, 6);
	else
		memset(e->mac, 0, 6);
	e->state = state;
	e->stamp_ns = now;
}

/* arp_send writes an ARP packet for our address into n->arp_tx and sends
 * it to eth_dst. */
static int arp_send(struct net *n, const uint8_t *eth_dst, uint16_t op,
		    const uint8_t *tha, uint32_t tpa)
{
	uint8_t *f = n->arp_tx, *a = f + NET_ETH_HLEN;

	net_eth_header(n, f, eth_dst, ETHERTYPE_ARP);
	put16(a + ARP_HTYPE, 1);
	put16(a + ARP_PTYPE, ETHERTYPE_IPV4);
	a[ARP_HLEN] = 6;
	a[ARP_PLEN] = 4;
	put16(a + ARP_OP, op);
	memcpy(a + ARP_SHA, n->mac, 6);
	put32(a + ARP_SPA, n->ip);
	memcpy(a + ARP_THA, tha, 6);
	put32(a + ARP_TPA, tpa);
	return net_send_frame(n, f, NET_ETH_HLEN + ARP_LEN);
}

int net_arp_announce(struct net *n)
{
	static const uint8_t zero[6];

	/* A gratuitous request (RFC 5227 "announcement"): sender and target
	 * are both our address. */
	return arp_send(n, broadcast_mac, ARP_OP_REQUEST, zero, n->ip);
}

void net_arp_input(struct net *n, const uint8_t *frame, size_t len)
{
	if (len < NET_ETH_HLEN + ARP_LEN) {
		n->stats.rx_dropped++;
		return;
	}
	const uint8_t *a = frame + NET_ETH_HLEN;
	uint16_t op = get16(a + ARP_OP);
	if (get16(a + ARP_HTYPE) != 1 || get16(a + ARP_PTYPE) != ETHERTYPE_IPV4 ||
	    a[ARP_HLEN] != 6 || a[ARP_PLEN] != 4 ||
	    (op != ARP_OP_REQUEST && op != ARP_OP_REPLY)) {
		n->stats.rx_dropped++;
		return;
	}

	const uint8_t *sha = a + ARP_SHA;
	uint32_t spa = get32(a + ARP_SPA), tpa = get32(a + ARP_TPA);
	if (mac_is_multicast(sha) || mac_is_zero(sha) ||
	    memcmp(sha, n->mac, 6) == 0 || spa == n->ip) {
		/* A bogus sender, our own packet, or another host claiming
		 * our address: nothing to learn or answer. */
		n->stats.rx_dropped++;
		return;
	}

	uint64_t now = tender_monotonic_ns();
	/* Only on-link unicast senders are worth remembering; a probe
	 * (sender 0.0.0.0) is answered but not cached. */
	bool learnable = net_ip_usable_src(n, spa) &&
			 (spa & n->netmask) == (n->ip & n->netmask);
	bool merged = false;
	if (learnable) {
		struct net_arp_entry *e = arp_find(n, spa);
		if (e != NULL) {
			memcpy(e->mac, sha, 6);
			e->state = NET_ARP_VALID;
			e->stamp_ns = now;
			merged = true;
		}
	}
	if (tpa != n->ip)
		return;
	if (learnable && !merged)
		arp_store(n, spa, sha, NET_ARP_VALID, now);
	if (op == ARP_OP_REQUEST &&
	    arp_send(n, sha, ARP_OP_REPLY, sha, spa) == 0)
		n->stats.arp_replies++;
}

/* arp_wait reads frames into n->arp_rx for up to wait_ns, handling ARP and
 * dropping everything else, until ip is resolved. Returns 0 once it is,
 * NET_ERR_UNREACHABLE when the time is up, NET_ERR_DEVICE on a device
 * error. */
static int arp_wait(struct net *n, uint32_t ip, uint64_t wait_ns,
		    uint8_t mac[6])
{
	uint64_t start = tender_monotonic_ns();

	for (;;) {
		for (int i = 0; i < NET_POLL_BATCH; i++) {
			size_t len;
			uint64_t r = tender_net_read(n->handle, n->arp_rx,
						     sizeof(n->arp_rx), &len);
			if (r == TENDER_RESULT_AGAIN)
				break;
			if (r == TENDER_RESULT_TRUNCATED) {
				/* Longer than any ARP packet. */
				n->stats.rx_truncated++;
				continue;
			}
			if (r != TENDER_RESULT_OK)
				return NET_ERR_DEVICE;
			n->stats.rx_frames++;
			if (len > sizeof(n->arp_rx) ||
			    !net_frame_for_us(n, n->arp_rx, len) ||
			    get16(n->arp_rx + ETH_TYPE) != ETHERTYPE_ARP) {
				n->stats.rx_dropped++;
				continue;
			}
			net_arp_input(n, n->arp_rx, len);
		}

		uint64_t now = tender_monotonic_ns();
		struct net_arp_entry *e = arp_find(n, ip);
		if (e != NULL && e->state == NET_ARP_VALID &&
		    !arp_expired(e, now)) {
			memcpy(mac, e->mac, 6);
			return 0;
		}
		uint64_t spent = now - start;
		if (spent >= wait_ns)
			return NET_ERR_UNREACHABLE;
		(void)tender_poll(wait_ns - spent);
	}
}

int net_resolve(struct net *n, uint32_t ip, uint8_t mac[6])
{
	if (n == NULL || mac == NULL)
		return NET_ERR_INVALID;
	if (net_ip_is_broadcast(n, ip)) {
		memcpy(mac, broadcast_mac, 6);
		return 0;
	}
	if (!net_ip_usable_src(n, ip))
		return NET_ERR_INVALID; /* multicast, loopback, ourselves... */

	uint32_t hop = ip;
	if ((ip & n->netmask) != (n->ip & n->netmask)) {
		if (n->gw == 0)
			return NET_ERR_UNREACHABLE;
		hop = n->gw;
	}

	uint64_t now = tender_monotonic_ns();
	struct net_arp_entry *e = arp_find(n, hop);
	if (e != NULL && !arp_expired(e, now)) {
		if (e->state == NET_ARP_FAILED)
			return NET_ERR_UNREACHABLE;
		memcpy(mac, e->mac, 6);
		return 0;
	}

	static const uint8_t zero[6];
	for (int try = 0; try < NET_ARP_TRIES; try++) {
		int err = arp_send(n, broadcast_mac, ARP_OP_REQUEST, zero, hop);
		if (err == NET_ERR_DEVICE)
			return err;
		err = arp_wait(n, hop, NET_ARP_RETRY_NS, mac);
		if (err != NET_ERR_UNREACHABLE)
			return err;
	}
	/* Remember the failure so that a burst of sends to a dead host does
	 * not wait NET_ARP_TRIES * NET_ARP_RETRY_NS each. */
	arp_store(n, hop, NULL, NET_ARP_FAILED, tender_monotonic_ns());
	return NET_ERR_UNREACHABLE;
}
