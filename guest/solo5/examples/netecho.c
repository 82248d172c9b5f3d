/*
 * netecho: declares network device "service0", checks the manifest the
 * monitor completed (attached, MAC, MTU), prints its MAC and "ready", then
 * sends back each Ethernet frame of type 0x88b5 (local experimental) it
 * receives with the addresses swapped, until it has
 * echoed as many as its command line says (decimal). Exercises poll's
 * ready set, net_read and net_write.
 */
#include "s5.h"
#include "s5_manifest.h"

S5_MANIFEST(1, S5_NET("service0"));

static uint8_t frame[1514 + 64];

int main(const char *cmdline)
{
	int want = 0;
	for (; *cmdline >= '0' && *cmdline <= '9'; cmdline++)
		want = want * 10 + (*cmdline - '0');
	const struct s5_mft *m = (const struct s5_mft *)(uintptr_t)s5_boot->mft;
	const struct s5_mft_entry *e = &m->e[1];
	if (m->version != 1 || m->entries != 2 || !e->attached || e->type != 2 ||
	    !s5_streq(e->name, "service0") || e->u.net.mtu < 576 || (e->u.net.mac[0] & 1)) {
		s5_puts("bad manifest\n");
		return 1;
	}
	static const char hex[] = "0123456789abcdef";
	char mac[18];
	for (int i = 0; i < 6; i++) {
		mac[3 * i] = hex[e->u.net.mac[i] >> 4];
		mac[3 * i + 1] = hex[e->u.net.mac[i] & 15];
		mac[3 * i + 2] = i < 5 ? ':' : '\n';
	}
	s5_puts("mac ");
	s5_putn(mac, sizeof mac);
	s5_puts("ready\n");
	for (int done = 0; done < want;) {
		uint64_t ready = 0;
		if (s5_poll(1000000000ull, &ready) != S5_OK)
			return 2;
		if (!(ready & 2))
			continue;
		volatile struct s5_net r = { 1, (uint64_t)(uintptr_t)frame, sizeof frame, -1 };
		s5_hypercall(S5_HC_NETREAD, &r);
		if (r.ret == S5_AGAIN)
			continue;
		if (r.ret != S5_OK || r.len < 14) {
			s5_puts("net_read failed\n");
			return 3;
		}
		if (frame[12] != 0x88 || frame[13] != 0xb5)
			continue; /* not the test's (a host's IPv6 chatter) */
		uint8_t tmp[6];
		for (int i = 0; i < 6; i++) {
			tmp[i] = frame[i];
			frame[i] = frame[6 + i];
			frame[6 + i] = tmp[i];
		}
		volatile struct s5_net w = { 1, (uint64_t)(uintptr_t)frame, r.len, -1 };
		s5_hypercall(S5_HC_NETWRITE, &w);
		if (w.ret != S5_OK) {
			s5_puts("net_write failed\n");
			return 4;
		}
		done++;
	}
	s5_puts("SUCCESS\n");
	return 0;
}
