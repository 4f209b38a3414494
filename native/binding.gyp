{
  "targets": [
    {
      "target_name": "tableflip",
      "sources": ["tableflip.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
