// Python/<transport>/64/...: the Python module beside what a Python program would use instead
// (multiprocessing Queue and Pipe, pyzmq, redis-py), run by bench/python/peers.py.
#pragma once

#include <string>
#include <vector>

namespace bench {

void register_python_benchmarks();
// Why the Python benchmarks cannot run here (empty: they can).
std::vector<std::string> missing_python_peers();

}  // namespace bench
