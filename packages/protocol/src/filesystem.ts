export * from "./gen/filesystem/filesystem_pb.js";
