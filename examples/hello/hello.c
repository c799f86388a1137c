#include <stdio.h>

int main(void)
{
	printf("Hello from a package Kiln built, signed and published.\n");
	return 0;
}
