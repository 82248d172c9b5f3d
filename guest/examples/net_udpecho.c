/*
 * net_udpecho: net_ping, plus a UDP echo service (RFC 862) on port 7: every
 * datagram is sent back unchanged to the address and port it came from.
 *
 *	tender run -net net0=tap0 net_udpecho.elf ip=198.51.100.2/24 [gw=...]
 */
#include "net.h"

TENDER_NET_DEVICE(net0, "net0");

#define ECHO_PORT 7

static struct net n;

static void echo(struct net *np, const struct net_udp_dgram *d, void *arg)
{
	(void)arg;
	(void)udp_reply(np, d, d->data, d->len);
}

int main(int argc, char **argv)
{
	int err = net_init(&n, net0, argc, argv);
	if (err != 0) {
		printf("net_udpecho: %s: %s\n", net_strerror(err), n.error);
		return err == NET_ERR_CONFIG ? 2 : 1;
	}
	err = net_udp_listen(&n, ECHO_PORT, echo, NULL);
	if (err != 0) {
		printf("net_udpecho: %s\n", net_strerror(err));
		return 1;
	}

	char cfg[96];
	net_format_config(&n, cfg, sizeof(cfg));
	printf("net_udpecho: %s udp echo port %d\n", cfg, ECHO_PORT);
	for (;;) {
		err = net_poll(&n, TENDER_POLL_MAX);
		if (err < 0) {
			printf("net_udpecho: %s\n", net_strerror(err));
			return 1;
		}
	}
}
