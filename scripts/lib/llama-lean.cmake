# Read right after llama.cpp's own project() call (CMAKE_PROJECT_llama.cpp_INCLUDE, see llama_wheel.py).
# llama-cpp-python turns llama.cpp's "common" helper library on (and with it an HTTP client), but
# the Python bindings only call libllama's C API, so it is left out: it was half of the compile.
set(LLAMA_BUILD_COMMON OFF CACHE BOOL "llama.cpp common helpers: not used by the Python bindings" FORCE)
