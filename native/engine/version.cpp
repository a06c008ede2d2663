// version.cpp: the engine's version string, reported by the worker and addon.
namespace fw {
const char* engine_version() { return "0.1.0"; }
}  // namespace fw
