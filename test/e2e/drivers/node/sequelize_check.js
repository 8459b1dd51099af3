// ORM check for Sequelize 6 (on node-postgres), run by
// test/e2e/drivers_test.go against plain PostgreSQL and through shardproxy;
// it prints one deterministic line per step, which the test compares.
// Generated ids differ between the two (the proxy's come from its
// cluster-wide allocator), so the steps print names, not ids. findOrCreate
// inserts through a temporary plpgsql function (Sequelize's "exception"
// insert), which the proxy sends to the new row's shard.
'use strict';
const { Sequelize, DataTypes, Op } = require('sequelize');

const db = new Sequelize(process.argv[2], { logging: false, pool: { max: 2 } });
const User = db.define('users', {
  id: { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true },
  name: DataTypes.TEXT,
  country: DataTypes.TEXT,
}, { timestamps: false });
const Post = db.define('posts', {
  author_id: { type: DataTypes.BIGINT, primaryKey: true },
  id: { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true },
  body: DataTypes.TEXT,
}, { timestamps: false });

async function step(name, fn) {
  let v;
  try {
    v = await fn();
  } catch (e) {
    v = ['error', (e.parent && e.parent.code) || e.name];
  }
  console.log(name + ': ' + JSON.stringify(v));
}

(async () => {
  // The earlier checks inserted users with explicit ids: start the
  // generated ones above them (through the proxy this is the sequence its
  // allocator draws from, on the default shard).
  await db.query("SELECT setval(pg_get_serial_sequence('users', 'id'), 100000)");
  await step('findOrCreate creates', async () => {
    const [u, created] = await User.findOrCreate({ where: { name: 'seq-foc' }, defaults: { country: 'NZ' } });
    return [u.name, u.country, created];
  });
  await step('findOrCreate finds', async () => {
    const [u, created] = await User.findOrCreate({ where: { name: 'seq-foc' }, defaults: { country: 'XX' } });
    return [u.name, u.country, created];
  });
  await step('the created row is found by its id', async () => {
    const u = await User.findOne({ where: { name: 'seq-foc' } });
    return (await User.findByPk(u.id)).name;
  });
  await step('create', async () => (await User.create({ name: 'seq-create', country: 'FJ' })).name);
  await step('bulkCreate over shards', async () => {
    const authors = await User.findAll({ where: { name: { [Op.like]: 'seq-%' } }, order: [['name', 'ASC']] });
    const rows = authors.flatMap((a) => [{ author_id: a.id, body: a.name + ' 1' }, { author_id: a.id, body: a.name + ' 2' }]);
    return (await Post.bulkCreate(rows, { returning: true })).map((p) => p.body).sort();
  });
  await step('managed transaction', () => db.transaction(async (transaction) => {
    const authors = await User.findAll({ where: { name: { [Op.like]: 'seq-%' } }, transaction, lock: true });
    for (const a of authors) {
      await Post.create({ author_id: a.id, body: 'in tx ' + a.name }, { transaction });
    }
    return Post.count({ where: { body: { [Op.like]: 'in tx %' } }, transaction });
  }));
  await step('findAll with include-free order and limit', async () => (await Post.findAll({ where: { body: { [Op.like]: 'seq-%' } }, order: [['body', 'DESC']], limit: 3 })).map((p) => p.body));
  await step('update', async () => (await User.update({ country: 'AQ' }, { where: { name: { [Op.like]: 'seq-%' } } }))[0]);
  await step('destroy', async () => (await Post.destroy({ where: { body: { [Op.like]: '%seq-%' } } })));
  await step('cleanup', async () => await User.destroy({ where: { name: { [Op.like]: 'seq-%' } } }));
  await db.close();
})();
