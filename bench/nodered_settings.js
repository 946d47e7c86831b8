// Node-RED settings for the poll benchmark: no editor, no admin API, warnings only.
module.exports = {
    uiHost: "127.0.0.1",
    uiPort: Number(process.env.NODE_RED_PORT || 0),
    httpAdminRoot: false,
    httpNodeRoot: false,
    flowFile: process.env.NODE_RED_FLOW,
    credentialSecret: false,
    logging: { console: { level: "warn", metrics: false, audit: false } },
    editorTheme: { tours: false },
};
