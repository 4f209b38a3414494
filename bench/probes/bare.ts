/** Start-up probe: a bare node:http server. */
import * as Http from "node:http"
import { report } from "./report.js"

Http.createServer((_request, response) => response.end("ok")).listen(0, "127.0.0.1", report)
