{
  "targets": [
    {
      "target_name": "spawn",
      "sources": ["src/spawn.c", "src/fs-ids.c"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      # Static: it runs inside any image, whatever libc it has (or none).
      "target_name": "tether-exec-as",
      "type": "executable",
      "sources": ["src/exec-as.c"],
      "cflags": ["-Wall", "-Wextra", "-Os"],
      "ldflags": ["-static", "-s"]
    }
  ]
}
