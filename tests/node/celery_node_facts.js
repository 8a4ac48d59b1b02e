// What celery-node really does, read off the library itself (a contract test: the Python side
// fails when an upgrade changes any of it). Usage: node celery_node_facts.js REDIS_URL
// Prints one JSON object. The protocol v2 message goes to the queue "facts-v2", which no worker
// reads; the protocol v1 message goes to "cancelq", where the worker must dead-letter it.
"use strict";
const celery = require("celery-node");
const Redis = require("ioredis");

const KWARGS = { account: "main", category: "spot", symbol: "BTCUSDT", orderLinkId: "facts-1" };

// The message celery-node pushes (as its LPUSH got it), and whether that LPUSH had been issued
// when applyAsync returned.
async function publishOnce(redisUrl, queue, protocol) {
  const client = celery.createClient(redisUrl, redisUrl, queue);
  const defaultProtocol = client.conf.TASK_PROTOCOL;
  if (protocol !== undefined) client.conf.TASK_PROTOCOL = protocol;
  const broker = client.broker.redis;
  const lpush = broker.lpush.bind(broker);
  let pushed;
  let pushedArgs;
  broker.lpush = (...args) => {
    pushedArgs = args;
    pushed = lpush(...args);
    return pushed;
  };
  const result = client.createTask("cancelq.cancel_order").applyAsync([], KWARGS);
  const fact = {
    defaultProtocol,
    returned: result.constructor.name,
    returnedThenable: typeof result.then === "function",
    pushIssuedBeforeReturn: pushed !== undefined,
    taskId: result.taskId,
  };
  while (pushed === undefined) await new Promise((resolve) => setTimeout(resolve, 5));
  fact.listLengthAfterPush = await pushed;
  fact.key = pushedArgs[0];
  fact.message = JSON.parse(pushedArgs[1]);
  await client.disconnect();
  return fact;
}

// applyAsync, then disconnect at once (what a short script does), on a client that is still
// connecting or already connected: does the cancel arrive, and does the caller hear of it?
// A failed push surfaces only as an unhandled rejection (which ends a Node process by default).
const unhandled = [];
process.on("unhandledRejection", (error) => unhandled.push(String(error && error.message)));

async function disconnectAtOnce(redis, redisUrl, queue, connected) {
  const client = celery.createClient(redisUrl, redisUrl, queue);
  if (connected) await client.isReady();
  const before = unhandled.length;
  client.createTask("cancelq.cancel_order").applyAsync([], KWARGS);
  await client.disconnect();
  await new Promise((resolve) => setTimeout(resolve, 300));
  return { pushed: await redis.llen(queue), errors: unhandled.slice(before) };
}

async function main(redisUrl) {
  const redis = new Redis(redisUrl);
  try {
    return {
      version: require("celery-node/package.json").version,
      v2: await publishOnce(redisUrl, "facts-v2"),
      v1: await publishOnce(redisUrl, "cancelq", 1),
      disconnectAtOnce: {
        whileConnecting: await disconnectAtOnce(redis, redisUrl, "facts-lost-1", false),
        whenConnected: await disconnectAtOnce(redis, redisUrl, "facts-lost-2", true),
      },
    };
  } finally {
    await redis.quit();
  }
}

main(process.argv[2]).then(
  (facts) => console.log(JSON.stringify(facts)),
  (error) => {
    console.error(error.message);
    process.exit(1);
  },
);
