// The value types the engine shares with the control side (`Interaction`, `EngineError`, the typed
// engine commands) are in QuiverModel; `import QuiverEngine` brings them along.
@_exported import QuiverModel
