"""How the service's processes run: the memory allocator, CPU priority, and the
command lines that start the API and the workers."""
