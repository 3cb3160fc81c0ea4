// The value types of commands (`EngineCommand`, `Interaction`, `Parameter`, `ArgumentRange`,
// `EngineReply`) are in QuiverModel, which the engine shares; `import QuiverControl` brings them
// along. This module does not link the engine.
@_exported import QuiverModel
