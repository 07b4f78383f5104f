/* kvmkit-img snapshot: being written (placeholder so the build links). */
#include "img/img.h"

int img_snapshot(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	img_error("snapshot is not implemented yet");
	return 1;
}
