/**
 * The ES module entry (`import … from 'netvsc'`): re-exports the CommonJS build, so ESM and CommonJS consumers share
 * one module instance (one native addon, one queue-claim registry) instead of loading two copies.
 */
import netvsc from './index.js'

export * from './index.js'
export default netvsc
