/*
 * net_ping: answers ARP and ICMP echo (ping) on the network device "net0",
 * forever.
 *
 *	tender run -net net0=tap0 net_ping.elf ip=198.51.100.2/24 [gw=198.51.100.1]
 *
 * Prints one line with its configuration, then runs until stopped. A bad
 * command line prints the reason and exits 2; a device error exits 1.
 */
#include "net.h"

TENDER_NET_DEVICE(net0, "net0");

static struct net n;

int main(int argc, char **argv)
{
	int err = net_init(&n, net0, argc, argv);
	if (err != 0) {
		printf("net_ping: %s: %s\n", net_strerror(err), n.error);
		return err == NET_ERR_CONFIG ? 2 : 1;
	}

	char cfg[96];
	net_format_config(&n, cfg, sizeof(cfg));
	printf("net_ping: %s\n", cfg);
	for (;;) {
		err = net_poll(&n, TENDER_POLL_MAX);
		if (err < 0) {
			printf("net_ping: %s\n", net_strerror(err));
			return 1;
		}
	}
}
