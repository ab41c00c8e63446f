/* I/O test program for gala-collect's ioflame probe: waits for a line on standard input,
 * then writes as many bytes to /dev/null in discard() (main -> discard -> write_block; not
 * a regular file: not to be counted), then COUNT blocks of SIZE bytes to FILE in
 * save_file() (main -> save_file -> write_block), fsyncs it in sync_file(), prints the
 * bytes it wrote to FILE, and exits after one more line (so that the collector can name
 * its stacks while it lives). Built with frame pointers.
 * Usage: gala_writer FILE COUNT SIZE */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* write_block() makes the system call itself: glibc's write sets up no frame, so a
 * frame-pointer walk from inside it skips its caller, and save_file would not be seen. */
__attribute__((noinline)) long write_block(int fd, const char *buf, size_t len)
{
	long ret;

#ifdef __x86_64__
	asm volatile("syscall"
		     : "=a"(ret)
		     : "a"(SYS_write), "D"(fd), "S"(buf), "d"(len)
		     : "rcx", "r11", "memory");
#else
	ret = write(fd, buf, len);
	if (ret < 0)
		ret = -errno;
#endif
	return ret;
}

__attribute__((noinline)) long save_file(int fd, int count, size_t size)
{
	char *buf = malloc(size);
	long total = 0;

	memset(buf, 'g', size);
	for (int i = 0; i < count; i++) {
		size_t done = 0;

		while (done < size) {
			long n = write_block(fd, buf + done, size - done);

			if (n == -EINTR)
				continue;
			if (n <= 0) {
				perror("write");
				exit(1);
			}
			done += n;
		}
		total += done;
	}
	free(buf);
	return total;
}

/* Many sampling periods' worth, so that a probe that counted them would show them. */
__attribute__((noinline)) void discard(int count, size_t size)
{
	int fd = open("/dev/null", O_WRONLY);
	char *buf = calloc(1, size);

	for (int i = 0; i < count; i++)
		if (fd < 0 || write_block(fd, buf, size) != (long)size) {
			perror("/dev/null");
			exit(1);
		}
	free(buf);
	close(fd);
}

__attribute__((noinline)) void sync_file(int fd)
{
	if (fsync(fd)) {
		perror("fsync");
		exit(1);
	}
}

int main(int argc, char **argv)
{
	char line[64];
	int fd;
	long total;

	if (argc != 4) {
		fprintf(stderr, "usage: gala_writer FILE COUNT SIZE\n");
		return 2;
	}
	fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	discard(atoi(argv[2]), strtoul(argv[3], NULL, 10));
	total = save_file(fd, atoi(argv[2]), strtoul(argv[3], NULL, 10));
	sync_file(fd);
	printf("%ld\n", total);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	close(fd);
	return 0;
}
