// IPFS Cluster's JavaScript client (@nftstorage/ipfs-cluster, from npm)
// against a running Pinring peer, with Node's own fetch, FormData, File and
// Blob. e2e/TestIPFSClusterClients starts the peers and runs this with
// PINRING_API (http://host:port/) and PINRING_AUTH (user:password).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { Cluster } from '@nftstorage/ipfs-cluster'
import * as cluster from '@nftstorage/ipfs-cluster'

const url = process.env.PINRING_API
const auth = process.env.PINRING_AUTH
if (!url || !auth) {
  throw new Error('PINRING_API and PINRING_AUTH must be set (e2e/TestIPFSClusterClients sets them)')
}
const config = { url: new URL(url), headers: { Authorization: `Basic ${btoa(auth)}` } }
const client = new Cluster(config.url, config)

// CIDv1 raw-leaf CIDs of "foo" and "bar" and of the directory wrapping
// them, as `ipfs add --cid-version 1 [-w]` gives them.
const FOO = 'bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy'
const BAR = 'bafkreih43yvs5w5fnp2aqya7w4q75g24gogrb3sct2qe7lsvcg3i7p4pxe'
const FOO_BAR_DIR = 'bafybeidhbfwu4j2zckkqd42azgxm7hlvjjqj7dunvv7o7c3avyrhgtvppm'

// --- a CAR file, built here so that the test needs nothing else from npm.
const varint = (n) => {
  const out = []
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80)
    n >>>= 7
  }
  out.push(n)
  return Uint8Array.from(out)
}
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}
const text = (s) => new TextEncoder().encode(s)
const cborString = (s) => concat(Uint8Array.of(0x60 + s.length), text(s)) // short strings only
const cborLink = (cid) => concat(Uint8Array.of(0xd8, 0x2a, 0x58, cid.length + 1, 0), cid)
const DAG_CBOR = 0x71
const cidV1 = (codec, bytes) =>
  concat(Uint8Array.of(1, codec, 0x12, 0x20), createHash('sha256').update(bytes).digest())
const base32 = (bytes) => {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
  let bits = 0
  let value = 0
  let out = 'b'
  for (const b of bytes) {
    value = (value << 8) | b
    bits += 8
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31]
  return out
}
// {"hello": "world"} and {"to": "world", "message": <link to it>}, in dag-cbor.
const message = concat(Uint8Array.of(0xa1), cborString('hello'), cborString('world'))
const messageCid = cidV1(DAG_CBOR, message)
const dag = concat(Uint8Array.of(0xa2), cborString('to'), cborString('world'), cborString('message'), cborLink(messageCid))
const dagCid = cidV1(DAG_CBOR, dag)
const header = concat(Uint8Array.of(0xa2), cborString('roots'), Uint8Array.of(0x81), cborLink(dagCid), cborString('version'), Uint8Array.of(1))
const section = (cid, data) => concat(varint(cid.length + data.length), cid, data)
const carBytes = concat(varint(header.length), header, section(dagCid, dag), section(messageCid, message))
// A File, not a bare Blob: Node's FormData names a Blob passed with an
// undefined file name "undefined" (browsers say "blob").
const car = () => new File([carBytes], 'data.car', { type: 'application/car' })

test('version', async () => {
  const version = await cluster.version(config)
  assert.equal(typeof version, 'string')
  assert.ok(version.length > 0)
})

test('add a file: one object, the root, with its size and allocations', async () => {
  const result = await client.add(new File(['foo'], 'foo.txt'), { replicationFactorMin: 2, replicationFactorMax: 2 })
  assert.equal(result.name, 'foo.txt')
  assert.equal(result.cid, FOO)
  assert.equal(result.size, 3)
  assert.equal(result.allocations.length, 2, 'allocations listed')
})

test('add a directory with its wrapping directory', async () => {
  const results = await client.addDirectory([new File(['foo'], 'foo.txt'), new File(['bar'], 'bar.txt')])
  assert.equal(results.length, 3, JSON.stringify(results))
  const [foo, bar, dir] = results
  assert.deepEqual([foo.name, foo.cid, foo.size], ['foo.txt', FOO, 3])
  assert.deepEqual([bar.name, bar.cid, bar.size], ['bar.txt', BAR, 3])
  assert.deepEqual([dir.name, dir.cid, dir.size], ['', FOO_BAR_DIR, 112])
})

test('a CAR added without format=car is a file like any other', async () => {
  const result = await client.add(car())
  assert.equal(result.name, 'data.car')
  assert.ok(result.cid.startsWith('bafkrei'), result.cid)
  assert.equal(result.size, carBytes.length)
})

test('import a CAR: its root pinned, its blocks counted', async () => {
  const result = await client.addCAR(car())
  assert.equal(result.name, 'data.car')
  assert.equal(result.cid, base32(dagCid))
  assert.equal(result.bytes, message.length + dag.length)
  const allocation = await client.allocation(result.cid)
  assert.equal(allocation.cid, base32(dagCid))
})

test('a CAR with two roots is refused with a reason', async () => {
  const twoRoots = concat(Uint8Array.of(0xa2), cborString('roots'), Uint8Array.of(0x82), cborLink(dagCid), cborLink(messageCid), cborString('version'), Uint8Array.of(1))
  const bad = new Blob([concat(varint(twoRoots.length), twoRoots, section(dagCid, dag))])
  const form = new FormData()
  form.append('file', bad, 'two.car')
  const res = await fetch(new URL('add?format=car&stream-channels=false', config.url), { method: 'POST', headers: config.headers, body: form })
  assert.equal(res.status, 400)
  const body = await res.json()
  assert.match(body.message, /exactly one root/)
})

test('pin with a name and metadata', async () => {
  const { cid } = await client.add(new File(['foo'], 'foo.txt'))
  const name = `name-${Date.now()}`
  const metadata = { meta: `test-${Date.now()}` }
  const result = await client.pin(cid, { name, metadata })
  assert.equal(result.cid, cid)
  assert.equal(result.name, name)
  assert.deepEqual(result.metadata, metadata)
  assert.equal(result.reference, null)
  assert.equal(result.pinUpdate, null)
})

test('status: every peer pins what was added', async () => {
  const { cid } = await client.add(new File([`status-${Date.now()}`], 'status.txt'))
  // Peers that have not merged the pin yet say "unpinned"; within seconds
  // every peer has it queued, pinning or pinned.
  let status
  for (let i = 0; i < 100; i++) {
    status = await client.status(cid)
    if (Object.values(status.peerMap).every((p) => p.status !== 'unpinned')) break
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  assert.equal(status.cid, cid)
  const peers = Object.values(status.peerMap)
  assert.equal(peers.length, Number(process.env.PINRING_PEERS || 3))
  for (const pinInfo of peers) {
    assert.ok(['pin_queued', 'pinning', 'pinned'].includes(pinInfo.status), pinInfo.status)
    assert.ok(pinInfo.peerName.length > 0)
    assert.ok(pinInfo.ipfsPeerId.length > 0)
  }
})

test('allocation carries the metadata of the add', async () => {
  const metadata = { meta: `test-${Date.now()}` }
  const { cid } = await client.add(new File(['foo'], 'foo.txt'), { metadata })
  const allocation = await client.allocation(cid)
  assert.deepEqual(allocation.metadata, metadata)
})

test('recover', async () => {
  const { cid } = await client.add(new File(['foo'], 'foo.txt'))
  const status = await client.recover(cid)
  assert.equal(status.cid, cid)
  for (const pinInfo of Object.values(status.peerMap)) {
    assert.ok(['pin_queued', 'pinning', 'pinned', 'remote'].includes(pinInfo.status), pinInfo.status)
  }
})

test('unpin', async () => {
  const { cid } = await client.add(new File([`unpin-${Date.now()}`], 'u.txt'))
  const result = await client.unpin(cid)
  assert.equal(result.cid, cid)
  await assert.rejects(client.allocation(cid), /404/)
})

test('metric names', async () => {
  const names = await client.metricNames()
  assert.ok(Array.isArray(names))
  assert.ok(names.includes('freespace'), names.join(','))
  names.forEach((n) => assert.equal(typeof n, 'string'))
})

const assertInfo = (info) => {
  for (const key of ['id', 'version', 'peerName', 'rpcProtocolVersion']) {
    assert.equal(typeof info[key], 'string', key)
    assert.ok(info[key].length > 0, key)
  }
  assert.equal(typeof info.commit, 'string')
  assert.ok(Array.isArray(info.addresses), 'addresses')
  assert.ok(Array.isArray(info.clusterPeers), 'clusterPeers')
  assert.ok(Array.isArray(info.clusterPeersAddresses), 'clusterPeersAddresses')
  assert.equal(typeof info.ipfs.id, 'string')
  assert.ok(info.ipfs.id.length > 0)
  assert.ok(info.ipfs.addresses)
}

test('info', async () => {
  assertInfo(await cluster.info(config))
})

test('peer list', async () => {
  const list = await client.peerList()
  assert.equal(list.length, Number(process.env.PINRING_PEERS || 3))
  list.forEach(assertInfo)
})

test('statusAll lists what was added', async () => {
  const { cid } = await client.add(new File([`test-${Date.now()}`], 'test.txt'))
  const statuses = await client.statusAll()
  assert.ok(statuses.some((s) => s.cid === cid), `${cid} not listed`)
  for (const status of statuses) {
    assert.ok(Object.keys(status.peerMap).length > 0, 'peers')
    for (const pinInfo of Object.values(status.peerMap)) {
      assert.equal(typeof pinInfo.status, 'string')
      assert.ok(pinInfo.peerName.length > 0)
    }
  }
})

test('statusAll filtered by status lists an unreachable pin, only with matching peers', async () => {
  // Nobody has it: it stays queued or pinning.
  const junk = 'QmNm4jsipiQysHXZW5WHbH6RqPjGBnKPkagujXTPzpZ3zo'
  await client.pin(junk)
  try {
    const filter = ['pin_queued', 'pinning', 'pin_error']
    const statuses = await client.statusAll({ filter })
    assert.ok(statuses.some((s) => s.cid === junk), `${junk} not listed`)
    for (const status of statuses) {
      for (const pinInfo of Object.values(status.peerMap)) {
        assert.ok(filter.includes(pinInfo.status), `${status.cid}: ${pinInfo.status}`)
      }
    }
  } finally {
    await client.unpin(junk)
  }
})

test('statusAll filtered by CIDs', async () => {
  const f0 = await client.add(new File([`test0-${Date.now()}`], 'test0.txt'))
  const f1 = await client.add(new File([`test1-${Date.now()}`], 'test1.txt'))
  const f2 = await client.add(new File([`test2-${Date.now()}`], 'test2.txt'))
  const statuses = await client.statusAll({ cids: [f0.cid, f1.cid] })
  assert.deepEqual(statuses.map((s) => s.cid).sort(), [f0.cid, f1.cid].sort())
  assert.ok(!statuses.some((s) => s.cid === f2.cid))
})

test('auth is required', async () => {
  for (const call of [() => cluster.version({ url: config.url }), () => new Cluster(config.url).version()]) {
    const err = await call().catch((e) => e)
    assert.ok(err instanceof Error)
    assert.match(err.message, /Unauthorized/)
  }
})
