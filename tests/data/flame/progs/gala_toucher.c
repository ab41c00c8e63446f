/* Memory test program for gala-collect's memflame probe: waits for a line on standard
 * input, then allocates MIB mebibytes in take_memory() (main -> take_memory) and touches
 * every page of it there (each first touch is a page fault), prints the pages it touched,
 * and exits after one more line (so that the collector can name its stacks while it
 * lives). Built with frame pointers; no huge pages (one fault per 4 KiB page).
 * Usage: gala_toucher MIB */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

__attribute__((noinline)) long take_memory(size_t bytes)
{
	long page = sysconf(_SC_PAGESIZE), pages = 0;
	/* mmap, not malloc: the pages are new (malloc could hand back touched memory). */
	volatile char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				-1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	madvise((void *)p, bytes, MADV_NOHUGEPAGE);
	for (size_t off = 0; off < bytes; off += page, pages++)
		p[off] = 1;
	return pages;
}

int main(int argc, char **argv)
{
	char line[64];
	long pages;

	if (argc != 2) {
		fprintf(stderr, "usage: gala_toucher MIB\n");
		return 2;
	}
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	pages = take_memory((size_t)atol(argv[1]) << 20);
	printf("%ld\n", pages);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	return 0;
}
