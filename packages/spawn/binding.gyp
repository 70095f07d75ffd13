{
  "targets": [
    {
      "target_name": "spawn",
      "sources": ["src/spawn.c"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
