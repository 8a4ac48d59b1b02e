// Cancels from Node.js with celery-node: task cancelq.cancel_order on the queue "cancelq",
// keyword arguments only. Usage: node cancel_with_celery_node.js REDIS_URL '[{cancel}, ...]'
// Prints the outcomes (cancelq:outcome:<requestId>) as a JSON array.
"use strict";
const celery = require("celery-node");
const Redis = require("ioredis");

async function cancelAll(redisUrl, cancels) {
  const client = celery.createClient(redisUrl, redisUrl, "cancelq");
  const cancelOrder = client.createTask("cancelq.cancel_order");
  const requestIds = cancels.map((cancel) => {
    const result = cancelOrder.applyAsync([], { ...cancel, enqueuedAt: Date.now() });
    return cancel.requestId ?? result.taskId; // without a requestId, the task id is the key
  });
  // applyAsync returned before its LPUSH was even sent, and nothing can await it: disconnecting
  // now would drop the cancels without an error. The outcome is the only confirmation.
  const redis = new Redis(redisUrl);
  try {
    return await waitForOutcomes(redis, requestIds, 15000);
  } finally {
    redis.disconnect();
    await client.disconnect();
  }
}

async function waitForOutcomes(redis, requestIds, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await redis.mget(requestIds.map((id) => `cancelq:outcome:${id}`));
    if (found.every((outcome) => outcome !== null) || Date.now() > deadline) {
      return found.map((outcome) => (outcome === null ? null : JSON.parse(outcome)));
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

cancelAll(process.argv[2], JSON.parse(process.argv[3])).then(
  (outcomes) => console.log(JSON.stringify(outcomes)),
  (error) => {
    console.error(error.message);
    process.exit(1);
  },
);
