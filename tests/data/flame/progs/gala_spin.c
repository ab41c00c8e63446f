/* On-CPU test program for gala-collect's oncpu probe: spends most of its time in burn_cpu,
 * called as main -> level_one -> level_two -> burn_cpu, and a little in the kernel reading
 * /dev/zero (so that samples with kernel frames exist). Built with frame pointers.
 * Usage: gala_spin SECONDS */
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static char buf[1 << 20];
volatile unsigned long sink;

__attribute__((noinline)) unsigned long burn_cpu(unsigned long n)
{
	unsigned long x = 0;

	for (unsigned long i = 0; i < n; i++)
		x += (i * i) ^ (x >> 3);
	return x;
}

__attribute__((noinline)) void kernel_work(int fd)
{
	if (read(fd, buf, sizeof(buf)) < 0)
		exit(2);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void level_two(double secs)
{
	int fd = open("/dev/zero", O_RDONLY);
	double end = now() + secs;

	if (fd < 0)
		exit(2);
	while (now() < end) {
		sink += burn_cpu(2000000);
		kernel_work(fd);
	}
	close(fd);
}

__attribute__((noinline)) void level_one(double secs)
{
	level_two(secs);
}

int main(int argc, char **argv)
{
	level_one(argc > 1 ? atof(argv[1]) : 5.0);
	return 0;
}
