{
  "targets": [
    {
      "target_name": "tableflip",
      "sources": ["native/tableflip.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
