/*
 * blknet: blk with network device "service0" declared before "storage",
 * so that the block device has handle 2 and handle 1 is a network device
 * its block calls must be refused on.
 */
#define BLK_WITH_NET
#include "blk.c"
