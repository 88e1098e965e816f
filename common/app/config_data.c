/*
 * config_data.c - loading a data set the way the configuration names it: a
 * CSV or LIBSVM file read with [data]'s options, or an IDX pair.
 */
#include "config.h"

#include "textdata.h"

void gdml_config_text_options(const gdml_config *cfg, gdml_text_options *out)
{
    int format = gdml_data_format_parse(cfg->data.format);
    int header = gdml_csv_header_parse(cfg->data.header);
    *out = (gdml_text_options){
        .format = format < 0 ? GDML_DATA_AUTO : (gdml_data_format)format,
        .header = header < 0 ? GDML_HEADER_AUTO : (gdml_csv_header)header,
        .label_column = (int)cfg->data.label_column,
        .dim = (size_t)cfg->model.inputs, /* LIBSVM rows are as wide as the model */
    };
}

gdml_err gdml_config_load_data(const gdml_config *cfg, const char *data, const char *images,
                               const char *labels, size_t shard_index, size_t shard_count,
                               bool sparse, gdml_dataset *out, gdml_errmsg *e)
{
    gdml_err err;
    if (!*data) {
        err = gdml_dataset_load_idx(images, labels, shard_index, shard_count, out, e);
    } else {
        gdml_text_options opt;
        gdml_config_text_options(cfg, &opt);
        opt.sparse = sparse;
        err = gdml_dataset_load_text(data, &opt, shard_index, shard_count, out, e);
    }
    if (!err && sparse && (err = gdml_dataset_sparsify(out, e))) {
        gdml_errmsg_prefix(e, "'%s': ", gdml_config_data_name(data, images));
        gdml_dataset_fini(out);
    }
    return err;
}

gdml_data_format gdml_config_data_format(const gdml_config *cfg, const char *data)
{
    if (!*data)
        return GDML_DATA_IDX;
    gdml_text_options opt;
    gdml_config_text_options(cfg, &opt);
    return opt.format == GDML_DATA_AUTO ? gdml_data_format_of(data) : opt.format;
}

gdml_data_format gdml_config_split_format(const gdml_config *cfg)
{
    return gdml_config_data_format(cfg, cfg->launch.train_data);
}

gdml_err gdml_config_split_data(const gdml_config *cfg, char (*names)[GDML_NAME_MAX],
                                unsigned regions, const char *dir, gdml_split_part *parts,
                                size_t *n_samples, gdml_errmsg *e)
{
    gdml_split_mode mode = (gdml_split_mode)gdml_split_mode_parse(cfg->launch.split);
    uint64_t seed = (uint64_t)cfg->launch.seed;
    if (!*cfg->launch.train_data)
        return gdml_split_files(cfg->launch.train_images, cfg->launch.train_labels, names, regions,
                                mode, cfg->launch.alpha, seed, dir, parts, n_samples, e);
    gdml_text_options opt;
    gdml_config_text_options(cfg, &opt);
    opt.dim = 0; /* rows are copied, not read into the model's width */
    return gdml_split_text_file(cfg->launch.train_data, &opt, names, regions, mode,
                                cfg->launch.alpha, seed, dir, parts, n_samples, e);
}
