/*
 * net_udpfn: the fn_upper function served over UDP. Each datagram to the
 * port (9000, or port=N) is answered with one datagram holding its payload
 * with a-z turned into A-Z. Also answers ARP and ping.
 *
 *	tender run -net net0=tap0 net_udpfn.elf ip=198.51.100.2/24 [gw=...] [port=N]
 */
#include "net.h"

TENDER_NET_DEVICE(net0, "net0");

#define DEFAULT_PORT 9000

static struct net n;

/* upper is fn_upper's handler: the same request and reply types as
 * tender_fn_serve, so the code is the same. */
static void upper(const struct tender_fn_request *req,
		  struct tender_fn_reply *rep)
{
	const uint8_t *in = req->body;
	uint8_t *out = rep->body;
	size_t len = req->len;

	/* Cannot happen while the reply buffer holds the largest datagram. */
	if (len > rep->cap) {
		static const char msg[] =
			"net_udpfn: request longer than the reply buffer";
		rep->status = 1;
		rep->body = (uint8_t *)(uintptr_t)msg;
		rep->len = sizeof(msg) - 1;
		return;
	}
	for (size_t i = 0; i < len; i++) {
		uint8_t c = in[i];
		out[i] = c >= 'a' && c <= 'z' ? (uint8_t)(c - ('a' - 'A')) : c;
	}
	rep->len = len;
}

/* parse_port returns the port=N setting (1..65535), DEFAULT_PORT without
 * one, or 0 when it is malformed. */
static unsigned parse_port(int argc, char **argv)
{
	unsigned port = DEFAULT_PORT;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "port=", 5) != 0)
			continue;
		a += 5;
		if (*a < '1' || *a > '9')
			return 0;
		char *end;
		unsigned long v = strtoul(a, &end, 10);
		if (*end != '\0' || v > 65535)
			return 0;
		port = (unsigned)v;
	}
	return port;
}

int main(int argc, char **argv)
{
	unsigned port = parse_port(argc, argv);
	if (port == 0) {
		printf("net_udpfn: want port=N with N in 1..65535\n");
		return 2;
	}
	int err = net_init(&n, net0, argc, argv);
	if (err != 0) {
		printf("net_udpfn: %s: %s\n", net_strerror(err), n.error);
		return err == NET_ERR_CONFIG ? 2 : 1;
	}

	char cfg[96];
	net_format_config(&n, cfg, sizeof(cfg));
	printf("net_udpfn: %s udp fn port %u\n", cfg, port);
	err = net_udp_serve(&n, (uint16_t)port, upper);
	printf("net_udpfn: %s\n", net_strerror(err));
	return 1;
}
