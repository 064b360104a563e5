/* A stand-in for the NVIDIA driver's libcuda.so.1 (this machine has no GPU): the four entry
 * points sleepyllama calls, with the real ABI (CUresult is an int; the strings are the driver's
 * own). cuInit returns the number in the file that $SLEEPYLLAMA_FAKE_CUDA names (default
 * /run/fake-cuda/result): 0, 100 (no device) or 999 (the error seen after a resume). */
#include <stdio.h>
#include <stdlib.h>

static int result_from_file(void) {
    const char *path = getenv("SLEEPYLLAMA_FAKE_CUDA");
    FILE *file = fopen(path ? path : "/run/fake-cuda/result", "r");
    int result = 0;
    if (file == NULL)
        return 3; /* CUDA_ERROR_NOT_INITIALIZED: the test forgot its file */
    if (fscanf(file, "%d", &result) != 1)
        result = 3;
    fclose(file);
    return result;
}

int cuInit(unsigned int flags) {
    (void)flags;
    return result_from_file();
}

int cuDeviceGetCount(int *count) {
    *count = result_from_file() == 0 ? 1 : 0;
    return 0;
}

int cuGetErrorName(int error, const char **name) {
    switch (error) {
    case 0: *name = "CUDA_SUCCESS"; return 0;
    case 3: *name = "CUDA_ERROR_NOT_INITIALIZED"; return 0;
    case 100: *name = "CUDA_ERROR_NO_DEVICE"; return 0;
    case 999: *name = "CUDA_ERROR_UNKNOWN"; return 0;
    default: *name = NULL; return 1; /* CUDA_ERROR_INVALID_VALUE */
    }
}

int cuGetErrorString(int error, const char **text) {
    switch (error) {
    case 0: *text = "no error"; return 0;
    case 3: *text = "initialization error"; return 0;
    case 100: *text = "no CUDA-capable device is detected"; return 0;
    case 999: *text = "unknown error"; return 0;
    default: *text = NULL; return 1;
    }
}
