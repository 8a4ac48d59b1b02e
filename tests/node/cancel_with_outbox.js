// Cancels from Node.js with the outbox guarantee: the Celery protocol v2 message built by hand
// (the README's "From any other language"), pushed with ioredis in one MULTI with its outbox
// entry, and awaited. Usage: node cancel_with_outbox.js REDIS_URL '[{cancel with requestId}, ...]'
// Prints, per cancel, the replies of LPUSH, ZADD and HSET as a JSON array.
"use strict";
const crypto = require("node:crypto");
const Redis = require("ioredis");

function celeryMessage(kwargs) {
  const id = kwargs.requestId;
  const embed = { callbacks: null, errbacks: null, chain: null, chord: null };
  return JSON.stringify({
    body: Buffer.from(JSON.stringify([[], kwargs, embed])).toString("base64"),
    "content-encoding": "utf-8",
    "content-type": "application/json",
    headers: {
      lang: "js", task: "cancelq.cancel_order", id, root_id: id, parent_id: null, group: null,
      retries: 0, eta: null, expires: null, timelimit: [null, null], shadow: null,
      argsrepr: "()", kwargsrepr: "{}", origin: `${process.pid}@node`, ignore_result: true,
    },
    properties: {
      correlation_id: id, reply_to: "", delivery_mode: 2,
      delivery_info: { exchange: "", routing_key: "cancelq" },
      priority: 0, body_encoding: "base64", delivery_tag: crypto.randomUUID(),
    },
  });
}

async function enqueue(redis, cancel) {
  const kwargs = { ...cancel, enqueuedAt: Date.now() };
  const message = celeryMessage(kwargs);
  const replies = await redis
    .multi()
    .lpush("cancelq", message)
    .zadd("cancelq:outbox", kwargs.enqueuedAt, kwargs.requestId)
    .hset("cancelq:outbox:msg", kwargs.requestId, message)
    .exec(); // resolves once Redis has applied all three, or rejects
  for (const [error] of replies) if (error) throw error;
  return replies.map(([, reply]) => reply);
}

async function main(redisUrl, cancels) {
  const redis = new Redis(redisUrl);
  try {
    const replies = [];
    for (const cancel of cancels) replies.push(await enqueue(redis, cancel));
    return replies;
  } finally {
    await redis.quit();
  }
}

main(process.argv[2], JSON.parse(process.argv[3])).then(
  (replies) => console.log(JSON.stringify(replies)),
  (error) => {
    console.error(error.message);
    process.exit(1);
  },
);
