/*
 * net.c: setup, configuration, the receive loop and Ethernet.
 *
 * The other layers are in net_arp.c, net_ip.c (IPv4 and ICMP) and
 * net_udp.c. See net.h for the API and net_impl.h for the frame layouts.
 */
#include "net_impl.h"

const char *net_strerror(int err)
{
	switch (err) {
	case 0:
		return "no error";
	case NET_ERR_INVALID:
		return "invalid argument";
	case NET_ERR_DEVICE:
		return "network device unusable";
	case NET_ERR_CONFIG:
		return "bad network configuration";
	case NET_ERR_TOO_LARGE:
		return "datagram too large";
	case NET_ERR_UNREACHABLE:
		return "destination unreachable";
	case NET_ERR_IO:
		return "network device failed to send";
	case NET_ERR_FULL:
		return "no free UDP binding";
	case NET_ERR_BUSY:
		return "UDP port already has a handler";
	default:
		return "unknown network error";
	}
}

uint64_t net_csum_add(uint64_t sum, const uint8_t *p, size_t len)
{
	size_t i = 0;

	for (; i + 1 < len; i += 2)
		sum += get16(p + i);
	if (i < len)
		sum += (uint64_t)p[i] << 8;
	return sum;
}

uint16_t net_csum_fold(uint64_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

int net_parse_ip(const char *s, const char *stop, uint32_t *ip)
{
	uint32_t v = 0;

	if (s == NULL)
		return NET_ERR_INVALID;
	for (int part = 0; part < 4; part++) {
		unsigned x = 0;
		int digits = 0;

		if (part > 0) {
			if (*s != '.')
				return NET_ERR_INVALID;
			s++;
		}
		while (*s >= '0' && *s <= '9') {
			if (digits == 3 || (digits == 1 && x == 0))
				return NET_ERR_INVALID; /* too long, or 0N */
			x = x * 10 + (unsigned)(*s - '0');
			digits++;
			s++;
		}
		if (digits == 0 || x > 255)
			return NET_ERR_INVALID;
		v = v << 8 | x;
	}
	if (*s != '\0' && (stop == NULL || strchr(stop, *s) == NULL))
		return NET_ERR_INVALID;
	*ip = v;
	return 0;
}

bool net_ip_is_broadcast(const struct net *n, uint32_t ip)
{
	if (ip == NET_IP_BROADCAST)
		return true;
	/* /31 and /32 have no broadcast address (RFC 3021). */
	return n->prefix <= 30 && ip == (n->ip | ~n->netmask);
}

/* ip_is_unicast reports whether ip could be a host's address at all. */
static bool ip_is_unicast(uint32_t ip)
{
	uint32_t first = ip >> 24;

	/* 0/8 "this network", 127/8 loopback, 224/4 multicast, 240/4
	 * reserved and the limited broadcast address. */
	return first != 0 && first != 127 && first < 224;
}

bool net_ip_usable_src(const struct net *n, uint32_t ip)
{
	return ip_is_unicast(ip) && ip != n->ip && !net_ip_is_broadcast(n, ip);
}

/* parse_prefix parses a decimal prefix length 1..32 that ends the string. */
static int parse_prefix(const char *s, uint32_t *prefix)
{
	uint32_t v = 0;
	int digits = 0;

	for (; *s >= '0' && *s <= '9'; s++) {
		if (++digits > 2)
			return NET_ERR_INVALID;
		v = v * 10 + (uint32_t)(*s - '0');
	}
	if (digits == 0 || *s != '\0' || v < 1 || v > 32)
		return NET_ERR_INVALID;
	*prefix = v;
	return 0;
}

static int config_error(struct net *n, const char *what, const char *arg)
{
	if (arg != NULL)
		snprintf(n->error, sizeof(n->error), "%s: \"%.48s\"", what,
			 arg);
	else
		snprintf(n->error, sizeof(n->error), "%s", what);
	return NET_ERR_CONFIG;
}

static int configure(struct net *n, int argc, char **argv)
{
	const char *ip_arg = NULL, *gw_arg = NULL;

	for (int i = 1; argv != NULL && i < argc; i++) {
		const char *a = argv[i];

		if (a == NULL)
			break;
		if (strncmp(a, "ip=", 3) == 0) {
			if (ip_arg != NULL)
				return config_error(n, "ip= given twice", a);
			ip_arg = a;
		} else if (strncmp(a, "gw=", 3) == 0) {
			if (gw_arg != NULL)
				return config_error(n, "gw= given twice", a);
			gw_arg = a;
		}
	}
	if (ip_arg == NULL)
		return config_error(n, "no ip=A.B.C.D/PREFIX argument", NULL);

	const char *slash = strchr(ip_arg + 3, '/');
	if (net_parse_ip(ip_arg + 3, "/", &n->ip) != 0 || slash == NULL ||
	    parse_prefix(slash + 1, &n->prefix) != 0)
		return config_error(n, "want ip=A.B.C.D/PREFIX (PREFIX 1..32)",
				    ip_arg);
	n->netmask = n->prefix == 32 ? 0xffffffffu
				     : ~(0xffffffffu >> n->prefix);
	uint32_t host = n->ip & ~n->netmask;
	if (!ip_is_unicast(n->ip) ||
	    (n->prefix <= 30 && (host == 0 || host == ~n->netmask)))
		return config_error(n, "ip= is not a usable host address",
				    ip_arg);

	n->gw = 0;
	if (gw_arg != NULL) {
		uint32_t gw;
		if (net_parse_ip(gw_arg + 3, "", &gw) != 0)
			return config_error(n, "want gw=A.B.C.D", gw_arg);
		if (!net_ip_usable_src(n, gw) ||
		    (n->prefix <= 30 && (gw & ~n->netmask) == 0))
			return config_error(n, "gw= is not a usable host "
					       "address", gw_arg);
		if ((gw & n->netmask) != (n->ip & n->netmask))
			return config_error(n, "gw= is outside the ip= prefix",
					    gw_arg);
		n->gw = gw;
	}
	return 0;
}

int net_init(struct net *n, const char *devname, int argc, char **argv)
{
	if (n == NULL)
		return NET_ERR_INVALID;
	memset(n, 0, sizeof(*n));
	n->handle = tender_net_handle(devname);
	if (n->handle < 0) {
		snprintf(n->error, sizeof(n->error),
			 "network device \"%.24s\" is not declared",
			 devname != NULL ? devname : "");
		return NET_ERR_DEVICE;
	}

	struct tender_net_info info;
	uint64_t r = tender_net_info(n->handle, &info);
	if (r != TENDER_RESULT_OK) {
		snprintf(n->error, sizeof(n->error),
			 "net_info on \"%.24s\" failed (result %llu)", devname,
			 (unsigned long long)r);
		return NET_ERR_DEVICE;
	}
	for (int i = 0; i < 6; i++)
		n->mac[i] = (uint8_t)(info.mac >> (8 * i));
	if (mac_is_multicast(n->mac) || mac_is_zero(n->mac)) {
		snprintf(n->error, sizeof(n->error),
			 "device MAC address %#llx is not unicast",
			 (unsigned long long)(info.mac & 0xffffffffffffULL));
		return NET_ERR_DEVICE;
	}
	if (info.mtu < NET_MTU_MIN) {
		snprintf(n->error, sizeof(n->error),
			 "device MTU %llu is below %d",
			 (unsigned long long)info.mtu, NET_MTU_MIN);
		return NET_ERR_DEVICE;
	}
	n->mtu = info.mtu > NET_MTU_MAX ? NET_MTU_MAX : (uint32_t)info.mtu;

	int err = configure(n, argc, argv);
	if (err != 0)
		return err;
	n->ip_id = (uint16_t)tender_rdtsc();
	(void)net_arp_announce(n); /* best effort */
	return 0;
}

int net_format_config(const struct net *n, char *buf, size_t size)
{
	char gw[24] = "";

	if (n->gw != 0)
		snprintf(gw, sizeof(gw), " gw %u.%u.%u.%u", n->gw >> 24,
			 (n->gw >> 16) & 255, (n->gw >> 8) & 255, n->gw & 255);
	return snprintf(buf, size,
			"mac %02x:%02x:%02x:%02x:%02x:%02x ip %u.%u.%u.%u/%u%s "
			"mtu %u",
			n->mac[0], n->mac[1], n->mac[2], n->mac[3], n->mac[4],
			n->mac[5], n->ip >> 24, (n->ip >> 16) & 255,
			(n->ip >> 8) & 255, n->ip & 255, n->prefix, gw, n->mtu);
}

void net_eth_header(const struct net *n, uint8_t *frame, const uint8_t *dst,
		    uint16_t type)
{
	memmove(frame + ETH_DST, dst, 6);
	memcpy(frame + ETH_SRC, n->mac, 6);
	put16(frame + ETH_TYPE, type);
}

int net_send_frame(struct net *n, uint8_t *frame, size_t len)
{
	if (len < ETH_MIN_FRAME) {
		memset(frame + len, 0, ETH_MIN_FRAME - len);
		len = ETH_MIN_FRAME;
	}
	if (len > (size_t)n->mtu + NET_ETH_HLEN)
		return NET_ERR_TOO_LARGE;

	uint64_t r = tender_net_write(n->handle, frame, len);
	if (r == TENDER_RESULT_OK) {
		n->stats.tx_frames++;
		return 0;
	}
	n->stats.tx_errors++;
	switch (r) {
	case TENDER_RESULT_TOO_LARGE:
		return NET_ERR_TOO_LARGE;
	case TENDER_RESULT_INVALID:
		return NET_ERR_DEVICE;
	default:
		return NET_ERR_IO;
	}
}

bool net_frame_for_us(const struct net *n, const uint8_t *frame, size_t len)
{
	if (len < NET_ETH_HLEN)
		return false;
	const uint8_t *dst = frame + ETH_DST, *src = frame + ETH_SRC;
	if (memcmp(dst, n->mac, 6) != 0 && !mac_is_broadcast(dst))
		return false;
	/* A sender is never a group address, nor us (a looped-back frame). */
	return !mac_is_multicast(src) && memcmp(src, n->mac, 6) != 0;
}

/* net_input hands one received frame to its protocol. */
static void net_input(struct net *n, const uint8_t *frame, size_t len)
{
	if (!net_frame_for_us(n, frame, len)) {
		n->stats.rx_dropped++;
		return;
	}
	switch (get16(frame + ETH_TYPE)) {
	case ETHERTYPE_ARP:
		net_arp_input(n, frame, len);
		break;
	case ETHERTYPE_IPV4:
		net_ip_input(n, frame, len);
		break;
	default: /* IPv6, VLAN tags, 802.3 lengths, ... */
		n->stats.rx_dropped++;
		break;
	}
}

/* net_drain reads and handles up to NET_POLL_BATCH pending frames. */
static int net_drain(struct net *n)
{
	size_t cap = (size_t)n->mtu + NET_ETH_HLEN;
	int count = 0;

	while (count < NET_POLL_BATCH) {
		size_t len;
		uint64_t r = tender_net_read(n->handle, n->rx, cap, &len);

		if (r == TENDER_RESULT_AGAIN)
			break;
		if (r == TENDER_RESULT_TRUNCATED) {
			count++;
			n->stats.rx_truncated++;
			continue;
		}
		if (r != TENDER_RESULT_OK)
			return NET_ERR_DEVICE;
		count++;
		n->stats.rx_frames++;
		if (len > cap) { /* the monitor overstepped the buffer */
			n->stats.rx_dropped++;
			continue;
		}
		net_input(n, n->rx, len);
	}
	return count;
}

int net_poll(struct net *n, uint64_t timeout_ns)
{
	if (n == NULL || n->in_handler)
		return NET_ERR_INVALID;

	int got = net_drain(n);
	if (got != 0 || timeout_ns == 0)
		return got;

	uint64_t start = tender_monotonic_ns();
	for (;;) {
		uint64_t spent = tender_monotonic_ns() - start;
		if (spent >= timeout_ns)
			return 0;
		uint64_t wait = timeout_ns - spent;
		if (wait > TENDER_POLL_MAX)
			wait = TENDER_POLL_MAX;
		/* Read after every wake-up, whatever the ready mask says: one
		 * read too many costs an exit, a missed frame a timeout. */
		(void)tender_poll(wait);
		got = net_drain(n);
		if (got != 0)
			return got;
	}
}
