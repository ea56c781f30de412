import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  chunkMessage,
  comment,
  eventMessage,
  httpChunk,
  namedMessage,
  progressMessage,
  retryMessage,
} from "../../src/stream/framing.js";

describe("SSE framing", () => {
  it("frames a message as an HTTP/1.1 chunk, sized in bytes, and finds the message in it again", () => {
    const message = 'id: 7\ndata: {"name":"Zoë"}\n\n';
    const chunk = httpChunk(message);
    assert.equal(chunk.toString(), `1d\r\n${message}\r\n`);
    assert.equal(chunkMessage(chunk).toString(), message);
    assert.equal(chunkMessage(httpChunk("")).length, 0);
  });

  it("frames an event with its sequence as id and its JSON as one data line", () => {
    assert.equal(eventMessage(7, '{"a":1}'), 'id: 7\ndata: {"a":1}\n\n');
  });

  it("never lets CR, LF or NUL into id, event or retry lines", () => {
    assert.equal(progressMessage("1\r\nevent: evil"), "id: 1event: evil\n\n");
    assert.equal(namedMessage("reset\nid: 9", "{}"), "event: resetid: 9\ndata: {}\n\n");
    assert.equal(progressMessage("4\u00002"), "id: 42\n\n");
    assert.equal(comment("keep\nalive"), ": keep alive\n\n");
  });

  it("splits data with line breaks over several data lines", () => {
    assert.equal(
      namedMessage("reset", "a\r\nb\rc\nd"),
      "event: reset\ndata: a\ndata: b\ndata: c\ndata: d\n\n",
    );
  });

  it("writes retry in whole milliseconds", () => {
    assert.equal(retryMessage(2000.4), "retry: 2000\n");
  });
});
